# The deploy user as the seed wrote it: a system user without a login shell. ssh runs every
# command through the login shell, so `nix copy` and every deploy-rs step fail with "This account
# is currently not available" (docs/deploy-rs-facts.md).
{ config, lib, pkgs, ... }:
{
  environment.etc."ndh-variant".text = "seed-shell";
  users.users.${config.homelab.deploy.sshUser}.shell = lib.mkForce "${pkgs.shadow}/bin/nologin";
}
