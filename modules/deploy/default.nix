# homelab.deploy: how deploy-rs reaches and activates this host. Read by lib/deploy-nodes.nix,
# which turns every host with the deploy user into a deploy-rs node; nothing here changes the
# system itself except the checks below.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.homelab.deploy;
in
{
  options.homelab.deploy = {
    targetHost = mkOption {
      type = types.str;
      default = config.networking.hostName;
      defaultText = lib.literalExpression "config.networking.hostName";
      example = "192.168.0.10";
      description = ''
        Address or DNS name deploy-rs connects to over SSH (the node's `hostname`). Defaults to
        the host name, which works when DNS or `~/.ssh/config` on the deploying machine resolves
        it; set the address in `hosts/<Name>/default.nix` otherwise.
      '';
    };

    sshUser = mkOption {
      type = types.str;
      default = "deploy";
      description = ''
        User deploy-rs logs in as. `homelab.users.deploy` creates this user; deploy-rs then
        runs its activation as root through `sudo -u root`.
      '';
    };

    sshOpts = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "-p" "2222" ];
      description = "Extra ssh options for this host (deploy-rs passes them to ssh and nix copy).";
    };

    magicRollback = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Roll back when the deployer cannot confirm the activation within `confirmTimeout`
        (typically: the new configuration broke SSH or the network).
      '';
    };

    autoRollback = mkOption {
      type = types.bool;
      default = true;
      description = "Roll back when the activation itself fails (for example a unit fails to start).";
    };

    confirmTimeout = mkOption {
      type = types.ints.between 1 65535;
      default = 30;
      description = "Seconds deploy-rs waits for the deployer to confirm before a magic rollback.";
    };

    activationTimeout = mkOption {
      type = types.nullOr (types.ints.between 1 65535);
      default = null;
      description = ''
        Seconds the deployer waits for the activation to start before giving up; `null` keeps
        deploy-rs's default (240 s). Tests set it small so a failed deploy ends quickly.
      '';
    };

    tempPath = mkOption {
      type = types.str;
      default = "/tmp";
      description = ''
        Directory for deploy-rs's confirmation canary on this host. Set here, not with deploy's
        `--temp-path` flag, which deploy-rs parses but ignores. The deploy user's sudo rule that
        lets it remove the canary is generated from this value.
      '';
    };

    fastConnection = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Copy the whole closure from the deployer instead of letting the host substitute what it
        can from its binary caches (the fleet's Harmonia cache, cache.nixos.org).
      '';
    };
  };

  config.assertions = [
    (
      let
        # The same rule the deploy user's sudo rules are generated with (lib/deploy-sudo-commands.nix).
        problem = (import ../../lib/deploy-sudo-commands.nix { inherit (cfg) tempPath; }).tempPathProblem;
      in
      {
        assertion = problem == null;
        message = ''homelab.deploy.tempPath = "${cfg.tempPath}" ${toString problem}.'';
      }
    )
    {
      assertion = cfg.targetHost != "";
      message = "homelab.deploy.targetHost is empty: set the address deploy-rs should connect to.";
    }
  ];
}
