# Development: deployable host at 192.168.0.91, the guinea pig for test-<hostname> branches (push test-Development).
{ ... }:
{
  imports = [ ../common.nix ];

  networking.hostName = "Development";

  homelab.deploy.targetHost = "192.168.0.91";
  homelab.users.deploy.enable = true;

  # The release this host was first installed with. Never raise it on an existing machine;
  # see the NixOS manual on system.stateVersion.
  system.stateVersion = "26.05";
}
