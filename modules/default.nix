# Every homelab.* module. Hosts import this (through hosts/common.nix); each module does nothing
# until its enable option is set. Modules never name hosts or addresses: hosts set options.
{
  imports = [
    ./deploy
    ./common/nix-cache.nix
    ./services/harmonia
    ./services/monitoring
    ../users/deploy
  ];
}
