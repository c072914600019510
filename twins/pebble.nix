# The twins' local ACME stand-in, on their deployer (docs/twins.md, item 7): pebble, Let's
# Encrypt's ACME test server (nixpkgs' pkgs.pebble), serving the ACME API on the twins' VLAN at
# ./acme-server.nix's port, with the TEST ONLY certificate for its name. Twins that request
# certificates ask it (./acme.nix). On only when one does: flake.nix sets
# homelab.twinDeployer.acme.enable from the hosts' twinFacts (lib/twin-facts.nix, `acme`).
# Imported by ./deployer.nix.
{ config, lib, pkgs, ... }:
let
  cfg = config.homelab.twinDeployer;
  standIn = import ./acme-server.nix;

  # pebble's JSON configuration (the keys of its cmd/pebble config struct).
  settings.pebble = {
    listenAddress = "0.0.0.0:${toString standIn.port}";
    # The management API (pebble's own issuing roots, for clients that check the certificates
    # they get) stays off: nothing here reads it.
    managementListenAddress = "";
    certificate = "${standIn.cert}";
    privateKey = "${standIn.key}";
    # Where pebble would check HTTP-01 and TLS-ALPN-01 challenges; with PEBBLE_VA_ALWAYS_VALID
    # (below) it never does.
    httpPort = 80;
    tlsPort = 443;
    ocspResponderURL = "";
    externalAccountBindingRequired = false;
  };
in
{
  options.homelab.twinDeployer.acme = {
    enable = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = ''
        Whether to run the twins' ACME stand-in (pebble) on the deployer: true when some host's
        twin requests ACME certificates (twinFacts' `acme`, fed by flake.nix).
      '';
    };
    configFile = lib.mkOption {
      type = lib.types.package;
      readOnly = true;
      internal = true;
      default = pkgs.writeText "twin-acme-pebble.json" (builtins.toJSON settings);
      defaultText = lib.literalMD "the stand-in's settings (twins/pebble.nix) as JSON";
      description = "pebble's configuration file, as the service runs it.";
    };
  };

  config = lib.mkIf cfg.acme.enable {
    assertions = [{
      assertion = cfg.address == standIn.deployerAddress;
      message = "homelab.twinDeployer.address is ${cfg.address}, but twins resolve ${standIn.name} to ${standIn.deployerAddress}: move the deployer in twins/acme-server.nix, which both sides read.";
    }];

    systemd.services.twin-acme-pebble = {
      description = "pebble, the twins' ACME stand-in (TEST ONLY)";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ];
      environment = {
        # Every challenge is valid unchecked: twins have no DNS, and nothing could prove a real
        # name's port 80 on the VLAN. What is tested is the twins' ACME client and its wiring.
        PEBBLE_VA_ALWAYS_VALID = "1";
        # No random waits before (skipped) validations.
        PEBBLE_VA_NOSLEEP = "1";
      };
      serviceConfig = {
        ExecStart = "${pkgs.pebble}/bin/pebble -config ${cfg.acme.configFile}";
        # pebble keeps everything in memory and needs no privilege (its port is above 1024).
        DynamicUser = true;
        Restart = "on-failure";
      };
    };

    # On every interface: eth0 is QEMU's restricted user network, which forwards only the
    # harness's SSH port, so the VLAN (eth1) is the only way to reach it.
    networking.firewall.allowedTCPPorts = [ standIn.port ];
  };
}
