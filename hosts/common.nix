# What every host shares: the homelab modules, an SSH server, systemd-boot on UEFI, flakes, the
# deploy user's keys, monitoring and where the host's secrets live. Host folders add their name,
# address and role.
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

  # Only takes effect on hosts that set homelab.users.deploy.enable = true.
  homelab.users.deploy.authorizedKeys = import ./deploy-keys.nix;

  homelab.services.monitoring = {
    enable = lib.mkDefault true;
    # Prometheus scrapes from another host.
    nodeExporter.openFirewall = lib.mkDefault true;
  };

  # This host's sops file (docs/secrets.md); used once the host sets homelab.secrets.enable.
  homelab.secrets.sopsFile = lib.mkDefault (../secrets + "/${config.networking.hostName}.yaml");

  # The fleet's binary cache (README, "Binary cache"). Off until the cache host exists: enable
  # Harmonia on the host you choose, deploy it, then set url and publicKey here once, e.g.
  #   homelab.nixCache = {
  #     enable = true;
  #     url = "http://<cache host>:5000";
  #     publicKey = "<content of /var/lib/homelab-harmonia/signing-key.pub on the cache host>";
  #   };
}
