# The deploy user's sudo as the seed wrote it: NOPASSWD only for `nix-env --set` and
# `switch-to-configuration`. deploy-rs runs neither through sudo: it runs
# `sudo -u root <closure>/activate-rs activate ...` and `sudo -u root rm <canary>`
# (docs/deploy-rs-facts.md), so every later activation is refused. Only the seed's rule (and
# root's own) remain: mkForce replaces users/deploy's rules.
{ config, lib, ... }:
let
  user = config.homelab.deploy.sshUser;
  nopasswd = command: { inherit command; options = [ "NOPASSWD" ]; };
in
{
  environment.etc."ndh-variant".text = "seed-sudo";
  security.sudo.extraRules = lib.mkForce [
    {
      users = [ "root" ];
      commands = [ { command = "ALL"; options = [ "SETENV" ]; } ];
    }
    {
      users = [ user ];
      runAs = "root";
      commands = map nopasswd [
        "/run/current-system/sw/bin/nix-env -p /nix/var/nix/profiles/system --set /nix/store/*"
        "/nix/var/nix/profiles/system/bin/switch-to-configuration *"
      ];
    }
  ];
}
