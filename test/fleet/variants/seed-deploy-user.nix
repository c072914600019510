# The seed's deploy user with both of its defects: restricted sudo and no login shell.
{ lib, ... }:
{
  imports = [ ./seed-sudo.nix ./seed-shell.nix ];
  environment.etc."ndh-variant".text = lib.mkForce "seed-deploy-user";
}
