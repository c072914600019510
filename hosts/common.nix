# What every host shares: the homelab modules, an SSH server, systemd-boot on UEFI, flakes, the
# deploy user and monitoring. The flake adds this file and the host's name (its folder's name)
# to every host (lib/host-modules.nix); a host folder holds only what differs: its address, its
# role, and its system.stateVersion, the release it was first installed with (copy it from an
# existing machine, never raise it; see the NixOS manual on system.stateVersion). It also says
# where the host's secrets live.
{ config, lib, ... }:
{
  imports = [ ../modules ];

  nixpkgs.hostPlatform = lib.mkDefault "x86_64-linux";

  # UEFI with systemd-boot: the boot default is readable from loader.conf, which the generation
  # exporter and the harness's probes rely on. The file systems follow the NixOS manual's
  # installation labels; a host with another layout imports its hardware-configuration.nix
  # (from nixos-generate-config), whose definitions replace these defaults.
  boot.loader.systemd-boot.enable = lib.mkDefault true;
  boot.loader.efi.canTouchEfiVariables = lib.mkDefault true;
  fileSystems."/" = lib.mkDefault {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
  };
  fileSystems."/boot" = lib.mkDefault {
    device = "/dev/disk/by-label/boot";
    fsType = "vfat";
    options = [ "fmask=0077" "dmask=0077" ];
  };

  services.openssh = {
    enable = true;
    settings = {
      PasswordAuthentication = false;
      KbdInteractiveAuthentication = false;
    };
  };

  nix.settings.experimental-features = [ "nix-command" "flakes" ];

  # Every host is a deploy-rs node unless it turns the deploy user off (hosts/Template does).
  homelab.users.deploy.enable = lib.mkDefault true;
  homelab.users.deploy.authorizedKeys = import ./deploy-keys.nix;

  homelab.services.monitoring = {
    enable = lib.mkDefault true;
    # Prometheus scrapes from another host.
    nodeExporter.openFirewall = lib.mkDefault true;
  };

  # This host's sops file (docs/secrets.md); used once the host declares a secret (sops.secrets).
  homelab.secrets.sopsFile = lib.mkDefault (../secrets + "/${config.networking.hostName}.yaml");

  # The fleet's binary cache (docs/fleet.md, "The binary cache"). Off until the cache host
  # exists: enable Harmonia on the host you choose, deploy it, then set url and publicKey here
  # once, e.g.
  #   homelab.nixCache = {
  #     enable = true;
  #     url = "http://<cache host>:5000";
  #     publicKey = "<content of /var/lib/homelab-harmonia/signing-key.pub on the cache host>";
  #   };
}
