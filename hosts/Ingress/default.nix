# Ingress: deployable host at 192.168.0.10 (address from the fleet plan).
{ ... }:
{
  imports = [ ../common.nix ];

  networking.hostName = "Ingress";

  homelab.deploy.targetHost = "192.168.0.10";
  homelab.users.deploy.enable = true;

  # The release this host was first installed with. Never raise it on an existing machine;
  # see the NixOS manual on system.stateVersion.
  system.stateVersion = "26.05";
}
