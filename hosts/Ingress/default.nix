# Ingress: deployable host at 192.168.0.10 (address from the fleet plan).
{
  homelab.deploy.targetHost = "192.168.0.10";

  system.stateVersion = "26.05";
}
