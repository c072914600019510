# Every homelab.* module. Hosts import this (through hosts/common.nix); each module does nothing
# until its enable option is set. Modules never name hosts or addresses: hosts set options.
# ./secrets sets sops-nix's options: whoever imports this also imports sops-nix's NixOS module
# (flake.nix for the hosts, test/vm-test.nix for the test nodes).
{
  imports = [
    ./deploy
    ./common/nix-cache.nix
    ./services/harmonia
    ./services/monitoring
    ./secrets
    ../users/deploy
  ];
}
