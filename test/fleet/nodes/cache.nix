# `cache`: the fleet's binary cache, Harmonia through homelab.services.harmonia, signing with
# the fixed test key (../keys) that the targets trust. The deployer pushes to it over SSH as root.
# It is also the fleet's Prometheus, as Production is in the real fleet: it scrapes the targets'
# node exporters, the list generated from the test's nodes by the real fleet's
# lib/scrape-targets.nix, with alert thresholds of seconds so a scenario sees them fire.
{ config, lib, pkgs, nodes, ... }:
let
  keys = import ../keys;
  snakeOil = import "${pkgs.path}/nixos/tests/ssh-keys.nix" pkgs;
  harmonia = config.homelab.services.harmonia;
in
{
  imports = [ ../../../modules ];

  homelab.services.harmonia = {
    enable = true;
    openFirewall = true;
    generateKey = false;
  };
  # The test key where homelab.services.harmonia expects its secret, before harmonia starts
  # (tmpfiles run in early boot); 0600 root: systemd hands it to Harmonia as a credential.
  systemd.tmpfiles.rules = [
    "C ${builtins.head harmonia.signKeyPaths} 0600 root root - ${keys.cache.secretFile}"
  ];

  homelab.services.monitoring.prometheus = {
    enable = true;
    # lib/scrape-targets.nix reads `<host>.config`, as nixosConfigurations have it.
    scrapeTargets = import ../../../lib/scrape-targets.nix
      (lib.mapAttrs (_: node: { config = node; }) { inherit (nodes) target target2; });
    scrapeInterval = "5s";
    evaluationInterval = "5s";
    alerts = {
      rebootPendingFor = "20s";
      testDeploymentFor = "20s";
    };
  };
  # The scenario asks Prometheus's HTTP API from this node.
  environment.systemPackages = [ pkgs.curl ];

  services.openssh.enable = true;
  users.users.root.openssh.authorizedKeys.keys = [ snakeOil.snakeOilPublicKey ];

  virtualisation = {
    # A store of its own (qcow2, writable) instead of the host's over 9p: snapshots work and
    # pushed paths land on the node's disk.
    useNixStoreImage = true;
    writableStore = true;
    writableStoreUseTmpfs = false;
    mountHostNixStore = false;
    sharedDirectories = lib.mkForce { };
    diskSize = 4096;
  };
  nix.settings.experimental-features = [ "nix-command" ];
}
