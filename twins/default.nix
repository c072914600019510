# homelab.twin: a twin of this host, a QEMU VM of the host's own configuration that the harness
# can boot, snapshot and deploy to like the NixOS test nodes (docs/twins.md). lib/fleet-hosts.nix
# adds this module to every host; it changes nothing in the host's own system: everything a twin
# changes lives in ./vm.nix, which this module hands to NixOS's VM variants (nixpkgs
# nixos/modules/virtualisation/build-vm.nix):
#   virtualisation.vmVariant                 -> system.build.vm, what
#                                               `nix build .#nixosConfigurations.<Host>.config.system.build.vm`
#                                               and `nixos-rebuild build-vm` build: the twin
#   virtualisation.vmVariantWithBootLoader   -> system.build.vmWithBootLoader: the same twin
# Each variant is the host's configuration extended (extendModules) with qemu-vm.nix and the
# module given here; the host's own toplevel never sees either.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.homelab.twin;
  hostName = config.networking.hostName;

  # The names of the host's secrets, read here, in the host's configuration: the twin replaces
  # each one's file, and defining sops.secrets from its own names inside the variant would
  # recurse.
  twinModule = {
    imports = [ ./vm.nix ];
    homelab.twin.hostSecretNames = builtins.attrNames config.sops.secrets;
  };
in
{
  options.homelab.twin = {
    addresses = mkOption {
      type = types.attrsOf (types.submodule {
        options = {
          address = mkOption { type = types.str; description = "IPv4 address on the twins' VLAN."; };
          prefixLength = mkOption { type = types.ints.between 8 30; description = "Its prefix length."; };
          standIn = mkOption {
            type = types.bool;
            description = "Whether the address stands in for a DNS name (the host's real address is not recorded).";
          };
        };
      });
      default = { };
      internal = true;
      description = ''
        Every host's twin address, generated from the fleet by lib/twin-addresses.nix and given
        to every host by lib/fleet-hosts.nix. Each twin's /etc/hosts lists all of them.
      '';
    };

    address = mkOption {
      type = types.str;
      default = cfg.addresses.${hostName}.address or (throw ''
        homelab.twin.address of ${hostName}: the fleet's twin addresses do not list this host.
        Evaluate it through lib/fleet-hosts.nix (as flake.nix does) or set homelab.twin.address.'');
      defaultText = lib.literalExpression "config.homelab.twin.addresses.\${config.networking.hostName}.address";
      description = ''
        The twin's address on its VLAN: the host's deploy address (homelab.deploy.targetHost)
        when that is an IPv4 address, else a stand-in that the twins' /etc/hosts give the
        host's name (lib/twin-addresses.nix).
      '';
    };

    prefixLength = mkOption {
      type = types.ints.between 8 30;
      default = cfg.addresses.${hostName}.prefixLength or 24;
      defaultText = lib.literalExpression "config.homelab.twin.addresses.\${config.networking.hostName}.prefixLength";
      description = "Prefix length of the twin's VLAN address.";
    };

    vlan = mkOption {
      type = types.ints.between 1 255;
      default = 1;
      description = ''
        The VDE VLAN the twin's second NIC joins: the start script reads the switch from
        QEMU_VDE_SOCKET_<vlan>, as the NixOS test nodes do. Without it (a twin started by hand)
        the NIC is attached to an isolated, restricted user network instead.
      '';
    };

    interface = mkOption {
      type = types.str;
      default = "eth1";
      readOnly = true;
      description = ''
        The guest's name of that NIC: eth0 is QEMU's user network, the VLAN NIC is named by its
        MAC address in the initrd, as the NixOS test framework names its VLAN NICs.
      '';
    };

    hostSecretNames = mkOption {
      type = types.listOf types.str;
      default = [ ];
      internal = true;
      description = "The host's sops.secrets names, handed to the twin by twins/default.nix.";
    };
  };

  config.virtualisation = {
    vmVariant = twinModule;
    vmVariantWithBootLoader = twinModule;
  };
}
