# Production: deployable host running the fleet's services (a natural home for Prometheus and
# the cache).
{
  # Its address is not recorded in this repository: homelab.deploy.targetHost defaults to the
  # host name ("Production"), which DNS or ~/.ssh/config on the deploying machine must resolve.
  # Set it here instead when you know the address:
  #   homelab.deploy.targetHost = "<address>";

  # Prometheus for the fleet: scrapes every deployable host's node exporter (the list is
  # generated from the fleet by lib/fleet-hosts.nix) and raises the generation alerts
  # (docs/monitoring.md).
  homelab.services.monitoring.prometheus.enable = true;

  system.stateVersion = "26.05";
}
