# The target configurations the scenarios deploy. Each is one NixOS module added to the booted
# target with extendModules (../nodes/target.nix), so a variant differs from the running system
# in exactly what its module says. ../outputs.nix turns them into nixosConfigurations and deploy
# nodes named "<node>-<variant>" (e.g. target-v2, target2-v1).
{
  v1 = ./v1.nix; # the baseline: the very system the target booted
  v2 = ./v2.nix; # a visible change: /etc/ndh-variant says v2, `hello` is installed
  cut-ssh = ./cut-ssh.nix; # no new SSH connection gets in: magic rollback
  failing-activation = ./failing-activation.nix; # a unit fails to start: auto rollback
  new-initrd = ./new-initrd.nix; # another initrd, same kernel: `--boot`, reboot detection
  cache-pull = ./cache-pull.nix; # the one variant not preloaded on the targets: from the cache
  seed-deploy-user = ./seed-deploy-user.nix; # the seed's deploy user: both defects below
  seed-sudo = ./seed-sudo.nix; # sudo only for nix-env --set and switch-to-configuration
  seed-shell = ./seed-shell.nix; # a nologin shell for the deploy user
  secret-a = ./secret-a.nix; # a sops-nix secret (A) for the fixed test host key
  secret-b-failing = ./secret-b-failing.nix; # another secret (B), and a unit that fails: auto rollback
  signed-closures = ./signed-closures.nix; # the deploy user untrusted: only signed paths get in
  signed-v2 = ./signed-v2.nix; # v2 in that mode: needs the CI signature
}
