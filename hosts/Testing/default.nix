# Testing: deployable host for trying changes before Production.
{ ... }:
{
  imports = [ ../common.nix ];

  networking.hostName = "Testing";

  # Its address is not recorded in this repository: homelab.deploy.targetHost defaults to the
  # host name ("Testing"), which DNS or ~/.ssh/config on the deploying machine must resolve.
  # Set it here instead when you know the address:
  #   homelab.deploy.targetHost = "<address>";
  homelab.users.deploy.enable = true;

  # The release this host was first installed with. Never raise it on an existing machine;
  # see the NixOS manual on system.stateVersion.
  system.stateVersion = "26.05";
}
