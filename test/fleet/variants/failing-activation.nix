# A unit that fails to start: switch-to-configuration exits 4, deploy-rs's activation fails and
# the target rolls itself back (auto rollback, docs/deploy-rs-facts.md).
{ pkgs, ... }:
{
  environment.etc."ndh-variant".text = "failing-activation";
  systemd.services.ndh-fails-on-purpose = {
    description = "Fails on purpose (nixos-deploy-harness auto-rollback scenario)";
    wantedBy = [ "multi-user.target" ];
    serviceConfig = {
      Type = "oneshot";
      ExecStart = "${pkgs.coreutils}/bin/false";
    };
  };
}
