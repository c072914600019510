# Another secret (B) in the same place, plus the unit of ./failing-activation.nix: the activation
# installs B, then fails, and deploy-rs's auto rollback re-activates the previous generation,
# which must put secret A back.
{ lib, ... }:
{
  imports = [ (import ../secrets/variant.nix "b") ./failing-activation.nix ];
  environment.etc."ndh-variant".text = lib.mkForce "secret-b-failing";
}
