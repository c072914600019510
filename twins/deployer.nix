# The twins' deployer: where deploy-rs runs against booted twins, as the deploy workflow runs it
# against the fleet (docs/twins.md, "Booting twins"). A NixOS VM of its own (not a host's twin):
# the backdoor, one NIC on the twins' VLAN at `homelab.twinDeployer.address`, every twin's name
# in /etc/hosts (the fleet fact homelab.twin.addresses, so `ssh deploy@Niko` and the hosts'
# deploy.nodes hostnames reach the twins), the TEST ONLY deploy key that twins authorize
# (./vm.nix), deploy-rs, Nix without any substituter, and the twins' ACME stand-in when a twin
# requests certificates (./pebble.nix). flake.nix builds it as
# `twinDeployer` with nixpkgs' qemu-vm.nix; the harness boots its `system.build.vm`.
#
# Not built or booted on the machine this was written on (no nixpkgs, no KVM): evaluated only.
{ config, lib, pkgs, modulesPath, ... }:
let
  cfg = config.homelab.twinDeployer;
  interface = "eth1";
  lastOctet = builtins.fromJSON (lib.last (lib.splitString "." cfg.address));
  hex = n: lib.toLower (lib.fixedWidthString 2 "0" (lib.toHexString n));
  mac = "52:54:00:13:01:${hex lastOctet}";
  usedAddresses = lib.mapAttrsToList (_: a: a.address) cfg.twinAddresses;
in
{
  imports = [
    (modulesPath + "/virtualisation/qemu-vm.nix")
    (modulesPath + "/testing/test-instrumentation.nix")
    ./pebble.nix
  ];

  options.homelab.twinDeployer = {
    address = lib.mkOption {
      type = lib.types.str;
      # Where twins find the ACME stand-in, too (./acme-server.nix).
      default = (import ./acme-server.nix).deployerAddress;
      description = "The deployer's address on the twins' VLAN (VDE switch QEMU_VDE_SOCKET_1).";
    };
    twinAddresses = lib.mkOption {
      type = lib.types.attrsOf lib.types.raw;
      description = "homelab.twin.addresses of the fleet (lib/twin-addresses.nix).";
    };
    deployRs = lib.mkOption {
      type = lib.types.package;
      description = "deploy-rs, the flake's input (flake.nix sets it).";
    };
    preload = lib.mkOption {
      type = lib.types.listOf lib.types.raw;
      default = [ ];
      description = "Store paths the deployer's store holds from the start (the twins' deploy profiles), so a deploy builds nothing and needs no network.";
    };
  };

  config = {
    assertions = [{
      assertion = !(builtins.elem cfg.address usedAddresses);
      message = "homelab.twinDeployer.address ${cfg.address} is a twin's address; pick another one in the VLAN.";
    }];

    networking.hostName = "deployer";
    system.stateVersion = lib.mkDefault lib.trivial.release;
    environment.systemPackages = [ cfg.deployRs ];

    virtualisation = {
      memorySize = 4096;
      cores = 2;
      diskSize = 8192;
      restrictNetwork = true;
      vlans = [ ];
      useNixStoreImage = true;
      writableStore = true;
      mountHostNixStore = false;
      sharedDirectories = lib.mkForce { };
      additionalPaths = cfg.preload;
      qemu.options = [
        "-device virtio-net-pci,netdev=twin-vlan1,mac=${mac}"
        ''-netdev "$(if [ -n "''${QEMU_VDE_SOCKET_1:-}" ]; then printf 'vde,id=twin-vlan1,sock=%s' "$QEMU_VDE_SOCKET_1"; else printf 'user,id=twin-vlan1,restrict=on'; fi)"''
      ];
    };
    boot.initrd.services.udev.rules = ''
      SUBSYSTEM=="net",ACTION=="add",ATTR{address}=="${mac}",NAME="${interface}"
    '';
    networking.interfaces.${interface}.ipv4.addresses = [{ address = cfg.address; prefixLength = 24; }];
    networking.extraHosts = lib.concatLines
      (lib.mapAttrsToList (host: a: "${a.address} ${host}") cfg.twinAddresses);

    nix.settings = {
      experimental-features = [ "nix-command" "flakes" ];
      substituters = lib.mkForce [ ];
      flake-registry = "";
    };

    # The harness copies the head's flake, its inputs and the twins' profiles in with `nix copy`
    # over QEMU's user network (a port forwarded to 22 on the restricted eth0), as root with the
    # same TEST ONLY key: the deployer's store then holds everything a deploy needs, offline.
    services.openssh.enable = true;
    users.users.root.openssh.authorizedKeys.keys = [
      (lib.removeSuffix "\n" (builtins.readFile ../test/fleet/keys/twin-deploy-ed25519.pub))
    ];

    # The TEST ONLY deploy key as root's default identity; twins authorize its public half.
    system.activationScripts.ndh-twin-deploy-key = ''
      install -D -m 0600 ${../test/fleet/keys/twin-deploy-ed25519} /root/.ssh/id_ed25519
    '';
  };
}
