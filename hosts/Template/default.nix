# Template: the starting point for a new host. It evaluates as a complete system (the flake
# builds it like any other) but is never deployed: it has no deploy user, so lib/deploy-nodes.nix
# leaves it out of deploy.nodes. To add a host, copy this folder to hosts/<Name>/ and follow the
# docs/fleet.md ("Adding a host").
{ ... }:
{
  imports = [ ../common.nix ];

  networking.hostName = "Template";

  # A new host sets these two:
  #   homelab.deploy.targetHost = "<address>";
  #   homelab.users.deploy.enable = true;

  system.stateVersion = "26.05";
}
