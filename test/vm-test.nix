# The NixOS test behind `pytest scenarios/` and the VM check `vmChecks.<system>.vm-test`:
#
#   pkgs.testers.runNixOSTest (import ./test/vm-test.nix { inherit nixpkgs deploy-rs sops-nix; })
#
# (test/fleet/default.nix makes that call for both flake.nix and the deployer's fleet flake.)
#
# Nodes, all on VLAN 1 with the test framework's addresses (alphabetical order: cache
# 192.168.1.1, deployer .2, target .3, target2 .4; /etc/hosts names them):
#   deployer        deploy-rs, the deploy key, the fleet flake in /root/fleet, every deploy
#                   profile and flake input in its store (fleet/nodes/deployer.nix)
#   target, target2 the fleet's deploy user, nix cache and monitoring modules, UEFI +
#                   systemd-boot, a persistent store, switch-to-configuration enabled, and the
#                   variants of fleet/variants (fleet/nodes/target.nix)
#   cache           Harmonia through homelab.services.harmonia with a test signing key, and
#                   the fleet's Prometheus (homelab.services.monitoring.prometheus) scraping the
#                   targets with short alert thresholds: the Production role (fleet/nodes/cache.nix)
#
# Every node imports sops-nix's NixOS module, as flake.nix gives it to every host: the homelab
# modules set its options (homelab.secrets), and the secrets variants use it.
#
# The testScript below is only a smoke test (a baseline deploy, then a switch) so that
# `nix build .#vmChecks.x86_64-linux.vm-test` exercises a real deploy on a KVM builder. The
# scenarios are the Python tests under scenarios/, which boot these same nodes with the
# harness (the nodes' `system.build.vm` start scripts) and check what happened on the targets.
{ nixpkgs, deploy-rs, sops-nix }:
{ ... }:
let
  facts = builtins.fromJSON (builtins.readFile ./fleet/facts.json);
in
{
  name = "homelab-deploy";

  # Module arguments of every node module.
  node.specialArgs = { inherit nixpkgs deploy-rs sops-nix; };

  defaults = {
    # sops-nix's module, as flake.nix gives it to every host; snapshot-able drives only (a
    # read-only store image, a qcow2 UEFI variable store): the harness restores the fleet between
    # scenarios instead of cold-booting it.
    imports = [ sops-nix.nixosModules.sops ./fleet/nodes/snapshottable.nix ];
    documentation.enable = false;
  };

  # The nodes, their VLANs and who may reboot: test/fleet/facts.json, which the harness's
  # scenarios read too (one source for both sides).
  nodes = builtins.mapAttrs (name: node: ./fleet/nodes + "/${node.module}") facts.nodes;

  testScript = ''
    cache.start()
    deployer.start()
    target.start()

    deployer.wait_for_unit("ndh-fleet.service")
    target.wait_for_unit("sshd.service")
    cache.wait_for_open_port(5000)

    def deploy(config: str) -> None:
        # --skip-checks: `nix flake check` would evaluate every configuration of the fleet.
        deployer.succeed(
            f"cd ${facts.fleetDir} && deploy --skip-checks .#{config} -- --offline >&2",
            timeout=1200,
        )

    with subtest("baseline deploy"):
        deploy("target-v1")
        target.succeed("test \"$(cat /etc/ndh-variant)\" = v1")

    with subtest("switch to v2"):
        deploy("target-v2")
        target.succeed("test \"$(cat /etc/ndh-variant)\" = v2")
        target.succeed("hello")
  '';
}
