# The node exporters Prometheus scrapes, generated from the fleet so that no host is written
# twice: every deployable host (homelab.users.deploy.enable) whose monitoring is on
# (homelab.services.monitoring.enable), at the address deploy-rs reaches it.
#
#   import ./lib/scrape-targets.nix nixosConfigurations
#     => [ { host = "<Host>"; address = "<targetHost>:<node exporter port>"; } ... ]  (by host name)
#
# Reads through `config`: homelab.users.deploy.enable, homelab.services.monitoring.{enable,
# nodeExporter.port}, homelab.deploy.targetHost. Builtins only (the tests evaluate it with
# mocks). flake.nix hands the result to every host as
# homelab.services.monitoring.prometheus.scrapeTargets; only a host that enables Prometheus uses it.
nixosConfigurations:
let
  configOf = name: nixosConfigurations.${name}.config;

  scraped = name:
    let c = configOf name; in
    (c.homelab.users.deploy.enable or false) && (c.homelab.services.monitoring.enable or false);

  # An IPv6 address needs brackets before the port.
  hostPart = address:
    if builtins.match ".*:.*" address != null && builtins.match "[[].*[]]" address == null
    then "[${address}]" else address;

  target = name:
    let c = configOf name; in
    {
      host = name;
      address = "${hostPart c.homelab.deploy.targetHost}:${toString c.homelab.services.monitoring.nodeExporter.port}";
    };
in
map target (builtins.filter scraped (builtins.attrNames nixosConfigurations))
