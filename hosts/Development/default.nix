# Development: deployable host at 192.168.0.91, the guinea pig for test-<hostname> branches
# (push test-Development).
{
  homelab.deploy.targetHost = "192.168.0.91";

  system.stateVersion = "26.05";
}
