# A configuration that cuts SSH the way a firewall typo does: port 22 is no longer opened.
# Established connections survive the firewall reload (NixOS accepts ESTABLISHED traffic), so the
# activation itself completes; deploy-rs's confirmation needs a new connection, cannot get one,
# and the target rolls itself back after confirmTimeout (magic rollback, docs/deploy-rs-facts.md).
{ lib, ... }:
{
  environment.etc."ndh-variant".text = "cut-ssh";
  networking.firewall.enable = true;
  services.openssh.openFirewall = lib.mkForce false;
}
