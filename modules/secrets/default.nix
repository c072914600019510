# homelab.secrets: this host's secrets with sops-nix (docs/secrets.md). The host's sops file
# (secrets/<Host>.yaml) is encrypted to the admins' age keys and to the host's own age key, which
# sops-nix derives at activation from the host's SSH host key, the same way ssh-to-age does
# (sops.age.sshKeyPaths). CI never holds a key that decrypts anything: it deploys the encrypted
# file, the host decrypts it into /run/secrets during activation.
#
# Needs sops-nix's NixOS module: flake.nix adds it to every host, the NixOS test fleet to every
# node. Each generation carries its own manifest, so activating an older generation (a rollback)
# installs that generation's secrets again.
{ config, lib, ... }:
let
  inherit (lib) mkOption mkEnableOption types;
  cfg = config.homelab.secrets;

  secretOptions = { name, ... }: {
    options = {
      key = mkOption {
        type = types.str;
        default = name;
        description = "Key of the secret in the sops file (ignored for format = \"binary\").";
      };
      owner = mkOption {
        type = types.str;
        default = "root";
        description = "User that owns the decrypted file; must exist on the host.";
      };
      group = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Group of the decrypted file; null: the owner's primary group.";
      };
      mode = mkOption {
        type = types.strMatching "0?[0-7]{3}";
        default = "0400";
        description = "Permissions of the decrypted file, in octal.";
      };
      path = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Where the decrypted file appears (a symlink into /run/secrets); null: /run/secrets/<name>.";
      };
      format = mkOption {
        type = types.enum [ "yaml" "json" "binary" ];
        default = "yaml";
        description = "Format of the sops file this secret is read from; binary: the whole file is the secret.";
      };
      sopsFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        description = "Sops file of this secret; null: homelab.secrets.sopsFile.";
      };
      restartUnits = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "Units restarted when the secret changes.";
      };
    };
  };

  sopsFiles = lib.unique (lib.filter (file: file != null)
    ([ cfg.sopsFile ] ++ lib.mapAttrsToList (_: secret: secret.sopsFile) cfg.secrets));
  missingFiles = lib.optionals cfg.validateSopsFiles
    (lib.filter (file: !builtins.pathExists file) sopsFiles);
  unknownOwners = lib.filter (owner: !(config.users.users ? ${owner}))
    (lib.unique (lib.mapAttrsToList (_: secret: secret.owner) cfg.secrets));
  withoutFile = lib.attrNames (lib.filterAttrs (_: secret: secret.sopsFile == null) cfg.secrets);
in
{
  options.homelab.secrets = {
    enable = mkEnableOption "this host's sops-nix secrets, decrypted at activation with the host's own key";

    sopsFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = lib.literalExpression "../../secrets/Production.yaml";
      description = ''
        This host's sops file. hosts/common.nix sets it to secrets/<Host>.yaml, the file
        .sops.yaml encrypts to this host's key and the admins'.
      '';
    };

    validateSopsFiles = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Check at evaluation time that the sops files exist (and let sops-nix hash them). Turn it
        off only for a sops file that is itself a build output, where reading it during
        evaluation would be import-from-derivation (the NixOS test's secrets are).
      '';
    };

    sshHostKeyPath = mkOption {
      type = types.str;
      default = "/etc/ssh/ssh_host_ed25519_key";
      description = ''
        The host's SSH ed25519 host key, from which sops-nix derives the host's age identity.
        Its public half, converted with ssh-to-age, is the host's recipient in .sops.yaml.
      '';
    };

    secrets = mkOption {
      type = types.attrsOf (types.submodule secretOptions);
      default = { };
      example = lib.literalExpression ''
        { "grafana/admin-password" = { owner = "grafana"; restartUnits = [ "grafana.service" ]; }; }
      '';
      description = "Secrets to decrypt at activation, by name (the file is /run/secrets/<name>).";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = withoutFile == [ ] || cfg.sopsFile != null;
        message = "homelab.secrets.sopsFile is not set and the secrets ${toString withoutFile} name no sopsFile of their own.";
      }
      {
        assertion = missingFiles == [ ];
        message = ''
          homelab.secrets on ${config.networking.hostName}: the sops file(s) ${toString missingFiles}
          do not exist. Create one with `sops secrets/${config.networking.hostName}.yaml`
          (docs/secrets.md, "Add a secret").'';
      }
      {
        assertion = unknownOwners == [ ];
        message = "homelab.secrets: owner(s) ${toString unknownOwners} are no user on ${config.networking.hostName} (users.users).";
      }
    ];

    sops = {
      defaultSopsFile = lib.mkIf (cfg.sopsFile != null) cfg.sopsFile;
      inherit (cfg) validateSopsFiles;
      # The host's own key only: no age key file, no GnuPG (sops-nix would otherwise import
      # the RSA host keys into GnuPG).
      age.sshKeyPaths = [ cfg.sshHostKeyPath ];
      age.keyFile = null;
      age.generateKey = false;
      gnupg.sshKeyPaths = [ ];
      secrets = lib.mapAttrs
        (_: secret: {
          inherit (secret) key owner mode format restartUnits;
        }
        // lib.optionalAttrs (secret.group != null) { inherit (secret) group; }
        // lib.optionalAttrs (secret.path != null) { inherit (secret) path; }
        // lib.optionalAttrs (secret.sopsFile != null) { inherit (secret) sopsFile; })
        cfg.secrets;
    };
  };
}
