# Template: the starting point for a new host. It evaluates as a complete system (the flake
# builds it like any other) but is never deployed: it turns the deploy user off, so
# lib/deploy-nodes.nix leaves it out of deploy.nodes. To add a host, copy this folder to
# hosts/<Name>/ and follow docs/fleet.md ("Adding a host").
{
  # A new host deletes this line and sets its address instead:
  #   homelab.deploy.targetHost = "<address>";
  homelab.users.deploy.enable = false;

  system.stateVersion = "26.05";
}
