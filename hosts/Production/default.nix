# Production: deployable host running the fleet's services (a natural home for Prometheus and the cache).
{ ... }:
{
  imports = [ ../common.nix ];

  networking.hostName = "Production";

  # Its address is not recorded in this repository: homelab.deploy.targetHost defaults to the
  # host name ("Production"), which DNS or ~/.ssh/config on the deploying machine must resolve.
  # Set it here instead when you know the address:
  #   homelab.deploy.targetHost = "<address>";
  homelab.users.deploy.enable = true;

  # Prometheus for the fleet: scrapes every deployable host's node exporter (the list is
  # generated from the fleet by lib/fleet-hosts.nix) and raises the generation alerts
  # (docs/monitoring.md).
  homelab.services.monitoring.prometheus.enable = true;

  # The release this host was first installed with. Never raise it on an existing machine;
  # see the NixOS manual on system.stateVersion.
  system.stateVersion = "26.05";
}
