# homelab.secrets: the fleet's settings for sops-nix (docs/secrets.md). A host declares its
# secrets with sops-nix's own options, `sops.secrets.<name>`; this module makes the host's sops
# file (secrets/<Host>.yaml) their default and the host's own age key, which sops-nix derives at
# activation from the SSH host key the way ssh-to-age does, the only key that decrypts them. CI
# never holds a key that decrypts anything: it deploys the encrypted file, the host decrypts it
# into /run/secrets during activation.
#
# Needs sops-nix's NixOS module: flake.nix adds it to every host, the NixOS test fleet to every
# node. Each generation carries its own manifest, so activating an older generation (a rollback)
# installs that generation's secrets again.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.homelab.secrets;
  secrets = config.sops.secrets;

  # A secret's sopsFile falls back to sops.defaultSopsFile, which throws while unset: tell
  # which secrets have no file instead of failing on the first one read.
  fileOf = secret: builtins.tryEval secret.sopsFile;
  withoutFile = lib.attrNames (lib.filterAttrs (_: secret: !(fileOf secret).success) secrets);
  sopsFiles = lib.unique (lib.optional (cfg.sopsFile != null) cfg.sopsFile
    ++ map (file: file.value) (lib.filter (file: file.success) (map fileOf (lib.attrValues secrets))));
  missingFiles = lib.optionals config.sops.validateSopsFiles
    (lib.filter (file: !builtins.pathExists file) sopsFiles);
  # sops-nix looks the owner's group up in users.users while it builds the manifest; an
  # assertion names the owner before that lookup fails.
  unknownOwners = lib.filter (owner: owner != null && !(config.users.users ? ${owner}))
    (lib.unique (lib.mapAttrsToList (_: secret: secret.owner) secrets));
in
{
  options.homelab.secrets = {
    enable = mkOption {
      type = types.bool;
      default = secrets != { };
      defaultText = lib.literalExpression "config.sops.secrets != { }";
      description = ''
        Whether to decrypt this host's sops-nix secrets with the host's own key only, from
        {option}`homelab.secrets.sopsFile` unless a secret names its own file. On as soon as
        the host declares a secret in {option}`sops.secrets`.
      '';
    };

    sopsFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = lib.literalExpression "../../secrets/Production.yaml";
      description = ''
        This host's sops file, sops.defaultSopsFile. hosts/common.nix sets it to
        secrets/<Host>.yaml, the file .sops.yaml encrypts to this host's key and the admins'.
      '';
    };

    validateSopsFiles = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Check at evaluation time that the sops files exist (and let sops-nix hash them), as
        sops.validateSopsFiles. Turn it off only for a sops file that is itself a build output,
        where reading it during evaluation would be import-from-derivation (the NixOS test's
        secrets are).
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
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = withoutFile == [ ];
        message = "homelab.secrets.sopsFile is not set and the secrets ${toString withoutFile} name no sopsFile of their own (sops.secrets.<name>.sopsFile).";
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
        message = "homelab.secrets: owner(s) ${toString unknownOwners} of sops.secrets are no user on ${config.networking.hostName} (users.users).";
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
    };
  };
}
