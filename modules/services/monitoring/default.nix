# homelab.services.monitoring: Prometheus node exporter with the textfile collector, plus the
# NixOS generation exporter (generation-exporter.sh) that feeds it:
#   nixos_current_generation, nixos_booted_generation, nixos_boot_generation,
#   nixos_profile_generation, nixos_reboot_pending, nixos_config_age_seconds   {host="<label>"}
# current != boot means a test-branch deploy is active or a reboot is pending; boot > booted
# after a `deploy --boot` means the next boot changes the system.
#
# When the exporter runs:
#   - in every activation (switch, test, and at boot): an activation snippet, with the new
#     system passed in, because the activation script moves /run/current-system only after
#     all snippets ran (nixpkgs nixos/modules/system/activation/activation-script.nix);
#   - when the system profile or the ESP's loader directory changes (a path unit: deploy-rs's
#     `nix-env --set`, `deploy --boot`, rollbacks);
#   - once at boot, after /run/booted-system exists, and then on a timer.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption mkEnableOption types;
  cfg = config.homelab.services.monitoring;
  loader = config.boot.loader;

  espDir = loader.efi.efiSysMountPoint;
  bootEntriesDir =
    (if loader.systemd-boot.xbootldrMountPoint or null != null
     then loader.systemd-boot.xbootldrMountPoint else espDir)
    + "/loader/entries";

  exporter = pkgs.callPackage ./exporter-package.nix { };
  exporterBin = "${exporter}/bin/nixos-generation-exporter";

  exporterEnvironment = {
    NIXOS_GEN_OUTPUT_DIR = cfg.textfileDirectory;
    NIXOS_GEN_HOST = cfg.hostLabel;
    NIXOS_GEN_ESP = espDir;
    NIXOS_GEN_BOOT_ENTRIES = bootEntriesDir;
  };

  shellEnvironment = lib.concatStringsSep " "
    (lib.mapAttrsToList (name: value: "${name}=${lib.escapeShellArg value}") exporterEnvironment);
in
{
  # Prometheus on the host that scrapes the fleet (homelab.services.monitoring.prometheus).
  imports = [ ./prometheus.nix ];

  options.homelab.services.monitoring = {
    enable = mkEnableOption "the node exporter and the NixOS generation exporter";

    hostLabel = mkOption {
      type = types.str;
      default = config.networking.hostName;
      defaultText = lib.literalExpression "config.networking.hostName";
      description = "Value of the `host` label on the generation metrics.";
    };

    textfileDirectory = mkOption {
      type = types.str;
      default = "/var/lib/prometheus-node-exporter-text";
      description = ''
        Directory node exporter's textfile collector reads `*.prom` files from. Not under /tmp
        or /var/tmp: services there see a private tmp (PrivateTmp), not the files.
      '';
    };

    interval = mkOption {
      type = types.str;
      default = "1min";
      description = "How often the generation exporter refreshes (systemd time span).";
    };

    nodeExporter = {
      port = mkOption {
        type = types.port;
        default = 9100;
        description = "Port of the node exporter.";
      };

      listenAddress = mkOption {
        type = types.str;
        default = "0.0.0.0";
        description = "Address the node exporter listens on.";
      };

      openFirewall = mkOption {
        type = types.bool;
        default = false;
        description = "Open the node exporter's port so Prometheus on another host can scrape it.";
      };

      extraCollectors = mkOption {
        type = types.listOf types.str;
        default = [ "systemd" ];
        description = "Collectors enabled on top of node exporter's defaults (textfile is one of those).";
      };
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = lib.hasPrefix "/" cfg.textfileDirectory
          && !(lib.hasPrefix "/tmp/" "${cfg.textfileDirectory}/")
          && !(lib.hasPrefix "/var/tmp/" "${cfg.textfileDirectory}/");
        message = ''
          homelab.services.monitoring.textfileDirectory = "${cfg.textfileDirectory}" must be an
          absolute path outside /tmp and /var/tmp: node exporter runs with PrivateTmp and would
          not see the files.'';
      }
    ];

    services.prometheus.exporters.node = {
      enable = true;
      inherit (cfg.nodeExporter) port listenAddress openFirewall;
      enabledCollectors = cfg.nodeExporter.extraCollectors;
      extraFlags = [ "--collector.textfile.directory=${cfg.textfileDirectory}" ];
    };

    systemd.tmpfiles.rules = [ "d ${cfg.textfileDirectory} 0755 root root -" ];

    systemd.services.nixos-generation-exporter = {
      description = "Write NixOS generation metrics for node exporter";
      # Once per boot, after stage 2 created /run/booted-system.
      wantedBy = [ "multi-user.target" ];
      after = [ "local-fs.target" "systemd-tmpfiles-setup.service" ];
      environment = exporterEnvironment;
      serviceConfig = {
        Type = "oneshot";
        ExecStart = exporterBin;
        # Root only because the ESP is usually readable by root alone.
        ProtectSystem = "strict";
        ReadWritePaths = [ cfg.textfileDirectory ];
        ProtectHome = true;
        PrivateTmp = true;
        PrivateNetwork = true;
        NoNewPrivileges = true;
      };
    };

    systemd.timers.nixos-generation-exporter = {
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnBootSec = cfg.interval;
        OnUnitActiveSec = cfg.interval;
      };
    };

    systemd.paths.nixos-generation-exporter = {
      wantedBy = [ "paths.target" ];
      pathConfig = {
        PathChanged = [ "/nix/var/nix/profiles" ]
          ++ lib.optional loader.systemd-boot.enable "${espDir}/loader";
        Unit = "nixos-generation-exporter.service";
      };
    };

    system.activationScripts.nixos-generation-exporter = {
      deps = [ "specialfs" ];
      text = ''
        mkdir -p ${lib.escapeShellArg cfg.textfileDirectory}
        ${shellEnvironment} NIXOS_GEN_CURRENT_SYSTEM="$systemConfig" ${exporterBin} \
          || echo "nixos-generation-exporter failed; the generation metrics stay stale until its timer runs" >&2
      '';
    };
  };
}
