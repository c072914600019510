# The alert rules on the generation metrics (generation-exporter.sh), as a Prometheus rule file's
# content. Builtins only: the Prometheus module renders it with builtins.toJSON (JSON is YAML),
# and the test suite renders it with nix-instantiate and runs `promtool check rules` and
# `promtool test rules` (generation-alerts.test.yml, beside this file) on the result.
#
#   import ./generation-alerts.nix { rebootPendingFor, testDeploymentFor, configMaxAgeDays }
#     => { groups = [ ... ]; }
#
# Every series carries the exporter's `host` label and the scrape's `instance` and `job`; the
# joins below match on exactly those, so one host's facts never meet another's.
{ rebootPendingFor ? "24h", testDeploymentFor ? "12h", configMaxAgeDays ? 30 }:
let
  sameHost = "on(instance, job, host)";
  configMaxAgeSeconds = configMaxAgeDays * 24 * 3600;
in
{
  groups = [
    {
      name = "nixos-generations";
      rules = [
        {
          # Either the boot loader's default has another kernel or initrd than the running
          # system booted with, or a `deploy --boot` made a newer generation the boot default
          # (the deployed configuration runs only after a reboot).
          alert = "NixosRebootPending";
          expr = "nixos_reboot_pending == 1 or ${sameHost} "
            + "(nixos_boot_generation > nixos_current_generation and ${sameHost} nixos_current_generation >= 0)";
          for = rebootPendingFor;
          labels.severity = "warning";
          annotations = {
            summary = "{{ $labels.instance }} needs a reboot";
            description = "{{ $labels.instance }} has been waiting for a reboot into its boot generation for more than ${rebootPendingFor}.";
          };
        }
        {
          # current > boot: a test-<hostname> deploy (switch-to-configuration test) is running
          # and the next boot falls back to the boot default.
          alert = "NixosTestDeploymentActive";
          expr = "nixos_current_generation > nixos_boot_generation and ${sameHost} nixos_boot_generation >= 0";
          for = testDeploymentFor;
          labels.severity = "warning";
          annotations = {
            summary = "{{ $labels.instance }} runs a test deployment";
            description = "{{ $labels.instance }} has been running generation {{ $value }}, which is not its boot default, for more than ${testDeploymentFor}: merge the test branch or deploy main.";
          };
        }
        {
          alert = "NixosConfigurationOld";
          expr = "nixos_config_age_seconds > ${toString configMaxAgeSeconds}";
          for = "1h";
          labels.severity = "info";
          annotations = {
            summary = "{{ $labels.instance }} runs an old configuration";
            description = "The configuration running on {{ $labels.instance }} was deployed more than ${toString configMaxAgeDays} days ago.";
          };
        }
      ];
    }
  ];
}
