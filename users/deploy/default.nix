# homelab.users.deploy: the account deploy-rs logs in as.
#
# What deploy-rs does on the host (serokell/deploy-rs src/push.rs, src/deploy.rs;
# docs/deploy-rs-facts.md):
#   1. `nix copy` of the closure over ssh as this user (no sudo): the nix daemon accepts the
#      paths only from a trusted user, or when they carry a signature it trusts;
#   2. `sudo -u root <closure>/activate-rs activate ...` and, concurrently, `... activate-rs wait`;
#   3. `sudo -u root rm <tempPath>/deploy-rs-canary-<hash>` to confirm (magic rollback).
# ssh runs each of these through the user's login shell, so the shell must be a real one.
#
# Honest trust model: this user is root-equivalent. A sudo rule for any
# /nix/store/*-activatable-*/activate-rs lets whoever can put such a path into the store run it
# as root, and any user allowed to talk to the nix daemon can build a derivation with that name.
# `trust = "trusted-user"` is root-equivalent on its own as well. The narrow sudo rules guard
# against accidents (a CI step running the wrong command as root fails); they do not isolate.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption mkEnableOption types;
  cfg = config.homelab.users.deploy;
  name = config.homelab.deploy.sshUser;
  sudoCommands = import ../../lib/deploy-sudo-commands.nix {
    inherit (config.homelab.deploy) tempPath;
    inherit (cfg) rmPaths;
  };
in
{
  imports = [ ../../modules/deploy ];

  options.homelab.users.deploy = {
    enable = mkEnableOption ''
      the deploy user (named by `homelab.deploy.sshUser`) that deploy-rs logs in as. A host with
      it enabled becomes a deploy-rs node. The user is root-equivalent (see `trust` and the
      trust model in docs/fleet.md): treat its SSH keys like root's
    '';

    authorizedKeys = mkOption {
      type = types.listOf types.singleLineStr;
      default = [ ];
      example = [ "ssh-ed25519 AAAAC3Nza... forgejo-ci" "ssh-ed25519 AAAAC3Nza... workstation" ];
      description = ''
        SSH public keys that may log in as the deploy user: the CI runner's deploy key plus the
        workstation keys of people who deploy by hand. Key-only login; the user has no password.
      '';
    };

    trust = mkOption {
      type = types.enum [ "trusted-user" "signed-closures" ];
      default = "trusted-user";
      description = ''
        How the nix daemon accepts the closures deploy-rs copies in.

        `trusted-user`: the user is in `nix.settings.trusted-users`. Simple, and root-equivalent
        by itself (a trusted user can import unsigned paths and change daemon settings).

        `signed-closures`: the user is not trusted; the daemon keeps `require-sigs` and accepts
        only paths signed by a key in `trusted-public-keys` (`closureSigningKeys`, plus the
        fleet cache's key from `homelab.nixCache`). deploy-rs copies paths of its own
        (activatable-*, *-activate-path, *-activate-rs) that no cache has signed, so CI signs
        every deployed closure: `ci/deploy-plan --signing-key-file <key> --exec sign`, the
        deploy job's signing step when the CLOSURE_SIGNING_KEY_FILE variable is set. This
        protects the integrity of what gets copied in; it does not make the user less than
        root, because of the activate-rs sudo rule.
      '';
    };

    closureSigningKeys = mkOption {
      type = types.listOf types.singleLineStr;
      default = [ ];
      example = [ "ci.homelab-1:AAAA...=" ];
      description = ''
        Public keys (`name:base64`) whose signatures make a copied closure acceptable when
        `trust = "signed-closures"`. Added to `nix.settings.trusted-public-keys`.
      '';
    };

    rmPaths = mkOption {
      type = types.listOf types.str;
      default = [ "/run/current-system/sw/bin/rm" ];
      description = ''
        Absolute paths of `rm` the canary sudo rule names. deploy-rs runs plain `rm`, which sudo
        resolves through the user's PATH; on NixOS that is /run/current-system/sw/bin/rm.
      '';
    };

    shell = mkOption {
      type = types.package;
      default = pkgs.bashInteractive;
      defaultText = lib.literalExpression "pkgs.bashInteractive";
      description = ''
        Login shell. ssh runs every deploy-rs command through it, so it must be a working shell,
        never nologin.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    users.users.${name} = {
      isSystemUser = true;
      group = name;
      description = "deploy-rs deployments (root-equivalent, see homelab.users.deploy)";
      # A real home: nix and ssh want somewhere to write caches and known_hosts.
      home = "/var/lib/${name}";
      createHome = true;
      shell = cfg.shell;
      # "*": no password can ever match, yet the account is not "locked" the way "!" is, so
      # sshd accepts key logins even if UsePAM is turned off.
      hashedPassword = "*";
      openssh.authorizedKeys.keys = cfg.authorizedKeys;
    };
    users.groups.${name} = { };

    security.sudo.extraRules = [
      {
        users = [ name ];
        runAs = "root";
        commands = map (command: { inherit command; options = [ "NOPASSWD" ]; }) sudoCommands.all;
      }
    ];

    nix.settings = lib.mkMerge [
      (lib.mkIf (cfg.trust == "trusted-user") { trusted-users = [ name ]; })
      (lib.mkIf (cfg.trust == "signed-closures") {
        require-sigs = true;
        trusted-public-keys = cfg.closureSigningKeys;
      })
    ];

    assertions = [
      {
        assertion = config.security.sudo.enable;
        message = ''
          homelab.users.deploy needs security.sudo.enable = true: deploy-rs runs its activation
          with `sudo -u root`, and the NOPASSWD rules are written for sudo's sudoers.'';
      }
      {
        assertion = cfg.trust != "signed-closures"
          || cfg.closureSigningKeys != [ ]
          || (config.homelab.nixCache.enable or false);
        message = ''
          homelab.users.deploy.trust = "signed-closures" but no key can sign closures: set
          homelab.users.deploy.closureSigningKeys, or enable homelab.nixCache so the host
          substitutes signed paths from the fleet cache.'';
      }
    ];

    warnings = lib.optional (cfg.authorizedKeys == [ ]) ''
      homelab.users.deploy is enabled on ${config.networking.hostName} but authorizedKeys is
      empty: nobody can log in as ${name}, so deploy-rs cannot deploy this host. Add the CI key
      and workstation keys (hosts/deploy-keys.nix).'';
  };
}
