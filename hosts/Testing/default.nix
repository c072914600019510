# Testing: deployable host for trying changes before Production.
{
  # Its address is not recorded in this repository: homelab.deploy.targetHost defaults to the
  # host name ("Testing"), which DNS or ~/.ssh/config on the deploying machine must resolve.
  # Set it here instead when you know the address:
  #   homelab.deploy.targetHost = "<address>";

  system.stateVersion = "26.05";
}
