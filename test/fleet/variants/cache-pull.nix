# The only variant whose closure is not preloaded into the targets' stores
# (../nodes/target.nix): its new paths must come from the fleet cache, signed by its key.
{
  environment.etc."ndh-variant".text = "cache-pull";
  environment.etc."ndh-cache-pull".text = "this file reached the target through the fleet cache\n";
}
