# Stand-in for nixpkgs' nixos/modules/testing/test-instrumentation.nix, for module-eval.nix: the
# option and the settings of it a twin's checks read (docs/twins.md lists every default the real
# module changes). The backdoor service reads and writes /dev/hvc0 and logs to ttyS0; getty is
# kept off both; root's password is empty (priority 150); no default gateway, no name servers.
{ config, lib, ... }:
{
  options.testing.backdoor = lib.mkEnableOption "backdoor service in stage 2" // { default = true; };

  config = {
    systemd.services.backdoor = lib.mkIf config.testing.backdoor {
      wantedBy = [ "multi-user.target" ];
      requires = [ "dev-hvc0.device" "dev-ttyS0.device" ];
      script = "exec bash --norc /dev/hvc0";
    };
    systemd.services."serial-getty@ttyS0".enable = false;
    systemd.services."serial-getty@hvc0".enable = false;
    boot.kernelParams = [ "console=ttyS0" "console=tty0" "panic=1" "boot.panic_on_fail" "clocksource=acpi_pm" ];
    networking.usePredictableInterfaceNames = false;
    networking.defaultGateway = lib.mkOverride 150 null;
    networking.nameservers = lib.mkOverride 150 [ ];
    users.users.root.hashedPasswordFile = lib.mkOverride 150 "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-hashed-password.root";
  };
}
