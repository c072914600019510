# homelab.services.monitoring.prometheus: a Prometheus that scrapes the node exporter of every
# host in scrapeTargets and evaluates the generation alerts (./generation-alerts.nix):
#   NixosRebootPending         a reboot has been pending longer than alerts.rebootPendingFor
#   NixosTestDeploymentActive  a test-<hostname> deploy has run longer than alerts.testDeploymentFor
#   NixosConfigurationOld      the running configuration is older than alerts.configMaxAgeDays
# The targets come from the fleet (lib/scrape-targets.nix, wired in flake.nix), never by hand.
# No Alertmanager is configured: the alerts are on Prometheus's /alerts page and its API.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption mkEnableOption types;
  cfg = config.homelab.services.monitoring.prometheus;

  # Prometheus' duration (prometheus/common model.ParseDuration): whole numbers with units,
  # each unit at most once and largest first (1h30m, 1d12h, 500ms; not 30m1h or 1.5h), or "0".
  durationPattern = lib.concatMapStrings (unit: "([0-9]+${unit})?") [ "y" "w" "d" "h" "m" "s" "ms" ];
  duration = lib.mkOptionType {
    name = "prometheusDuration";
    description = "Prometheus duration (e.g. 30s, 1h30m, 1d12h, 500ms)";
    descriptionClass = "noun";
    check = value: builtins.isString value
      && (value == "0" || (value != "" && builtins.match durationPattern value != null));
    merge = lib.mergeEqualOption;
  };

  rules = import ./generation-alerts.nix {
    inherit (cfg.alerts) rebootPendingFor testDeploymentFor configMaxAgeDays;
  };

  repeated = attribute:
    let values = map (target: target.${attribute}) cfg.scrapeTargets; in
    lib.filter (value: lib.count (other: other == value) values > 1) (lib.unique values);
in
{
  options.homelab.services.monitoring.prometheus = {
    enable = mkEnableOption "Prometheus scraping the fleet's node exporters, with the generation alerts";

    scrapeTargets = mkOption {
      type = types.listOf (types.submodule {
        options = {
          host = mkOption {
            type = types.str;
            description = "Host name; the `instance` label of its series and alerts.";
          };
          address = mkOption {
            type = types.str;
            description = "`address:port` of the host's node exporter.";
          };
        };
      });
      default = [ ];
      description = ''
        Node exporters to scrape. flake.nix sets it on every host from the fleet
        (lib/scrape-targets.nix: every deployable host with monitoring enabled); the NixOS
        test's Prometheus node sets it the same way from the test fleet.
      '';
    };

    port = mkOption {
      type = types.port;
      default = 9090;
      description = "Port of Prometheus's web interface and API.";
    };

    listenAddress = mkOption {
      type = types.str;
      default = "0.0.0.0";
      description = "Address Prometheus listens on.";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open Prometheus's port (its web interface and API) in the firewall.";
    };

    scrapeInterval = mkOption {
      type = duration;
      default = "1m";
      description = "How often each node exporter is scraped.";
    };

    evaluationInterval = mkOption {
      type = duration;
      default = "1m";
      description = "How often the alert rules are evaluated.";
    };

    retentionTime = mkOption {
      type = duration;
      default = "90d";
      description = "How long samples are kept.";
    };

    alerts = {
      rebootPendingFor = mkOption {
        type = duration;
        default = "24h";
        description = "How long a reboot may be pending (boot default differs from the booted kernel or initrd, or is newer than the running generation) before NixosRebootPending fires.";
      };
      testDeploymentFor = mkOption {
        type = duration;
        default = "12h";
        description = "How long a test deployment (running generation newer than the boot default) may stay before NixosTestDeploymentActive fires.";
      };
      configMaxAgeDays = mkOption {
        type = types.ints.positive;
        default = 30;
        description = "Age in days of the running configuration from which NixosConfigurationOld fires.";
      };
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.scrapeTargets != [ ];
        message = ''
          homelab.services.monitoring.prometheus.scrapeTargets is empty on ${config.networking.hostName}:
          flake.nix generates it from the fleet (lib/scrape-targets.nix); a host evaluated
          outside the flake must set it the same way.'';
      }
      {
        assertion = repeated "host" == [ ] && repeated "address" == [ ];
        message = ''
          homelab.services.monitoring.prometheus.scrapeTargets names a host or an address twice:
          ${toString (repeated "host" ++ repeated "address")}. Generate the list from the fleet
          instead of writing hosts by hand.'';
      }
    ];

    services.prometheus = {
      enable = true;
      inherit (cfg) port listenAddress retentionTime;
      globalConfig = {
        scrape_interval = cfg.scrapeInterval;
        evaluation_interval = cfg.evaluationInterval;
      };
      scrapeConfigs = [
        {
          job_name = "node";
          static_configs = map
            (target: {
              targets = [ target.address ];
              labels.instance = target.host;
            })
            cfg.scrapeTargets;
        }
      ];
      # JSON is YAML; nixpkgs runs `promtool check rules` on every rule file at build time.
      ruleFiles = [ (pkgs.writeText "generation-alerts.rules.yml" (builtins.toJSON rules)) ];
    };

    networking.firewall.allowedTCPPorts = lib.optional cfg.openFirewall cfg.port;
  };
}
