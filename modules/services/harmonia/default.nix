# homelab.services.harmonia: the fleet's binary cache, wrapping nixpkgs' services.harmonia.
#
# nixpkgs' module has had three shapes (nixos/modules/services/networking/harmonia.nix):
#   1. services.harmonia.{enable, signKeyPath, settings}           one key, plain service
#   2. services.harmonia.{enable, signKeyPaths, settings}          list of keys
#   3. services.harmonia.cache.{enable, signKeyPaths, settings}    socket-activated service;
#      the flat names still exist as renamed aliases that print a warning.
# The shape is read from `options`, so the same module works on each nixpkgs release without
# warnings. With shape 3 the service starts on the first connection: wait for the port, not
# for harmonia.service.
#
# Harmonia serves this host's /nix/store over HTTP (default port 5000) and signs on the fly.
# It keeps no access log; prove a pull on the client (`nix path-info --sigs`) or via /metrics.
{ config, lib, options, pkgs, ... }:
let
  inherit (lib) mkOption mkEnableOption types;
  cfg = config.homelab.services.harmonia;
  upstream = options.services.harmonia or { };

  shape =
    if upstream ? cache then "cache"
    else if upstream ? signKeyPaths then "flat-list"
    else "flat-single";

  # Plain values: nixpkgs sets its own defaults with mkDefault, which these override.
  settings = {
    bind = "${cfg.listenAddress}:${toString cfg.port}";
    # Lower than cache.nixos.org's 40, so hosts ask the fleet cache first.
    priority = 30;
  } // cfg.settings;

  firstKey = if cfg.signKeyPaths == [ ] then null else builtins.head cfg.signKeyPaths;

  upstreamConfig =
    if shape == "cache" then {
      services.harmonia.cache = { enable = true; inherit (cfg) signKeyPaths; inherit settings; };
    }
    else if shape == "flat-list" then {
      services.harmonia = { enable = true; inherit (cfg) signKeyPaths; inherit settings; };
    }
    else {
      services.harmonia = { enable = true; signKeyPath = firstKey; inherit settings; };
    };

  # Unit that consumes the key: generate it before harmonia.service loads it as a credential.
  # The secret is created under umask 077. The public half must stay readable by everyone
  # (clients copy it into their configuration): its directory is created first under umask 022,
  # and on every start the directories above it are made searchable and the file 0644, which
  # also repairs keys an earlier version generated inside a 0700 directory.
  keygenScript = pkgs.writeShellScript "harmonia-keygen" ''
    set -eu
    secret=${lib.escapeShellArg firstKey}
    public=${lib.escapeShellArg cfg.publicKeyFile}
    if [ ! -e "$secret" ]; then
      (umask 022; mkdir -p "$(dirname "$public")")
      umask 077
      mkdir -p "$(dirname "$secret")"
      ${config.nix.package}/bin/nix-store --generate-binary-cache-key \
        ${lib.escapeShellArg cfg.keyName} "$secret.tmp" "$public.tmp"
      mv "$public.tmp" "$public"
      mv "$secret.tmp" "$secret"
    fi
    if [ -e "$public" ]; then
      chmod 0644 "$public"
      dir=$(dirname "$public")
      chmod a+rx "$dir"
      while [ "$dir" != / ]; do
        dir=$(dirname "$dir")
        if [ ! -d "$dir" ]; then break; fi
        case $(stat -c %A "$dir") in
          *x) ;;
          *) chmod a+x "$dir" ;;
        esac
      done
    fi
  '';
in
{
  options.homelab.services.harmonia = {
    enable = mkEnableOption "the Harmonia binary cache for the fleet on this host";

    signKeyPaths = mkOption {
      type = types.listOf types.str;
      default = [ "/var/lib/homelab-harmonia/signing-key.sec" ];
      description = ''
        Secret signing key files, outside the Nix store (strings, not Nix paths: a path literal
        would copy the secret into the world-readable store). systemd hands them to Harmonia as
        credentials. nixpkgs releases with the single-key shape accept exactly one.
      '';
    };

    generateKey = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Create the first signing key pair (`nix-store --generate-binary-cache-key`) before
        Harmonia starts, if the secret file does not exist yet. The public half lands in
        `publicKeyFile`; put its content into `homelab.nixCache.publicKey` for the fleet.
      '';
    };

    keyName = mkOption {
      type = types.str;
      default = "${config.networking.hostName}-harmonia-1";
      defaultText = lib.literalExpression ''"''${config.networking.hostName}-harmonia-1"'';
      description = "Name part of a generated key (`name:base64`); bump the number when rotating.";
    };

    publicKeyFile = mkOption {
      type = types.str;
      default = "/var/lib/homelab-harmonia/signing-key.pub";
      description = ''
        Where a generated key's public half is written. It is readable by everyone: the file is
        0644 and every directory above it searchable (fixed on each start of the key unit).
      '';
    };

    port = mkOption {
      type = types.port;
      default = 5000;
      description = "Port Harmonia listens on.";
    };

    listenAddress = mkOption {
      type = types.str;
      default = if cfg.nginx.enable then "127.0.0.1" else "[::]";
      defaultText = lib.literalExpression ''if nginx.enable then "127.0.0.1" else "[::]"'';
      description = "Address Harmonia binds; loopback only when nginx fronts it.";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Open `port` (plain HTTP) in the firewall. With the nginx front enabled, ports 80 and 443
        are opened instead and Harmonia itself stays on loopback.
      '';
    };

    settings = mkOption {
      type = types.attrsOf types.anything;
      default = { };
      example = { workers = 8; priority = 30; };
      description = ''
        Extra Harmonia settings (harmonia.toml); see nix-community/harmonia's README.
        `bind` is set from `listenAddress` and `port`.
      '';
    };

    nginx = {
      enable = mkEnableOption "an nginx HTTPS front for the cache";

      serverName = mkOption {
        type = types.str;
        example = "cache.example.lan";
        description = "Virtual host name of the HTTPS front; clients use https://<serverName>.";
      };

      enableACME = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Get the certificate from ACME (security.acme must be configured). Set false and give
          `sslCertificate`/`sslCertificateKey` for an internal CA.
        '';
      };

      sslCertificate = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Certificate file when not using ACME.";
      };

      sslCertificateKey = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Certificate key file when not using ACME (outside the store).";
      };
    };
  };

  config = lib.mkIf cfg.enable (lib.mkMerge [
    upstreamConfig

    {
      assertions = [
        {
          assertion = upstream ? cache || upstream ? enable;
          message = "homelab.services.harmonia: this nixpkgs has no services.harmonia module.";
        }
        {
          assertion = cfg.signKeyPaths != [ ];
          message = "homelab.services.harmonia.signKeyPaths is empty: Harmonia would serve unsigned paths that clients with require-sigs reject.";
        }
        {
          assertion = shape != "flat-single" || builtins.length cfg.signKeyPaths == 1;
          message = "homelab.services.harmonia: this nixpkgs' services.harmonia takes exactly one signing key (signKeyPath); signKeyPaths has ${toString (builtins.length cfg.signKeyPaths)}.";
        }
        {
          assertion = builtins.all (p: lib.hasPrefix "/" p && !lib.hasPrefix builtins.storeDir p) cfg.signKeyPaths;
          message = "homelab.services.harmonia.signKeyPaths must be absolute paths outside ${builtins.storeDir}: the store is world-readable.";
        }
        {
          assertion = !cfg.nginx.enable || cfg.nginx.enableACME
            || (cfg.nginx.sslCertificate != null && cfg.nginx.sslCertificateKey != null);
          message = "homelab.services.harmonia.nginx: without enableACME set sslCertificate and sslCertificateKey.";
        }
      ];

      networking.firewall.allowedTCPPorts =
        if cfg.nginx.enable then [ 80 443 ]
        else lib.optional cfg.openFirewall cfg.port;
    }

    (lib.mkIf (cfg.generateKey && firstKey != null) {
      systemd.services.homelab-harmonia-keygen = {
        description = "Create the Harmonia signing key if it does not exist";
        before = [ "harmonia.service" ];
        requiredBy = [ "harmonia.service" ];
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          ExecStart = "${keygenScript}";
        };
      };
    })

    (lib.mkIf cfg.nginx.enable {
      services.nginx = {
        enable = true;
        recommendedProxySettings = true;
        virtualHosts.${cfg.nginx.serverName} = {
          forceSSL = true;
          enableACME = cfg.nginx.enableACME;
          sslCertificate = lib.mkIf (!cfg.nginx.enableACME) cfg.nginx.sslCertificate;
          sslCertificateKey = lib.mkIf (!cfg.nginx.enableACME) cfg.nginx.sslCertificateKey;
          locations."/" = {
            proxyPass = "http://127.0.0.1:${toString cfg.port}";
            # NARs are large and streamed: do not buffer them to disk.
            extraConfig = ''
              proxy_buffering off;
              proxy_request_buffering off;
            '';
          };
        };
      };
    })
  ]);
}
