# Production: deployable host running the fleet's services (a natural home for Prometheus and
# the cache).
{
  # Its address is not recorded in this repository: homelab.deploy.targetHost defaults to the
  # host name ("Production"), which DNS or ~/.ssh/config on the deploying machine must resolve.
  # Set it here instead when you know the address:
  #   homelab.deploy.targetHost = "<address>";

  system.stateVersion = "26.05";
}
