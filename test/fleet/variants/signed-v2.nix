# v2 on a target in signed-closures mode: deployable only once CI signed the profile's closure
# (deploy-rs's own activatable-*, *-activate-path and *-activate-rs paths included).
{ lib, pkgs, ... }:
{
  imports = [ ./signed-closures.nix ];
  environment.etc."ndh-variant".text = lib.mkForce "signed-v2";
  environment.systemPackages = [ pkgs.hello ];
}
