# homelab.nixCache: use the fleet's binary cache (Harmonia, modules/services/harmonia) as a
# substituter, trusting only its signing key.
#
# Usable on any NixOS machine, personal ones included: import this file (or the flake output
# nixosModules.nix-cache) and set enable, url and publicKey. On non-NixOS machines put the same
# values in nix.conf (docs/fleet.md, "The binary cache"):
#   extra-substituters = <url>
#   extra-trusted-public-keys = <publicKey>
{ config, lib, ... }:
let
  inherit (lib) mkOption mkEnableOption types;
  cfg = config.homelab.nixCache;
in
{
  options.homelab.nixCache = {
    enable = mkEnableOption "the fleet's binary cache as a substituter";

    url = mkOption {
      type = types.str;
      example = "https://cache.example.lan";
      description = ''
        Base URL of the cache: `http://<cache host>:5000` for Harmonia directly, or the HTTPS
        name of its nginx front.
      '';
    };

    publicKey = mkOption {
      type = types.singleLineStr;
      example = "cache.example.lan-1:AAAA...=";
      description = ''
        The cache's public signing key (`name:base64`), printed on the cache host by
        `cat` of `homelab.services.harmonia.publicKeyFile`. Paths the cache serves are accepted
        only with this signature (`require-sigs`).
      '';
    };

    negativeTtl = mkOption {
      type = types.ints.unsigned;
      default = 60;
      description = ''
        `narinfo-cache-negative-ttl`: seconds nix remembers that the cache did NOT have a path.
        Nix's default, 3600, means a host that asked before CI pushed a closure ignores the
        cache for an hour; a minute keeps deploys fast. Tests use 0.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    nix.settings = {
      substituters = [ cfg.url ];
      trusted-public-keys = [ cfg.publicKey ];
      require-sigs = true;
      narinfo-cache-negative-ttl = cfg.negativeTtl;
    };

    assertions = [
      {
        assertion = builtins.match "https?://[^[:space:]]+" cfg.url != null;
        message = ''homelab.nixCache.url = "${cfg.url}" is not an http:// or https:// URL.'';
      }
      {
        assertion = builtins.match "[^:[:space:]]+:[A-Za-z0-9+/]+={0,2}" cfg.publicKey != null;
        message = ''
          homelab.nixCache.publicKey = "${cfg.publicKey}" is not a nix public key
          ("name:base64", the content of the cache host's public key file).'';
      }
    ];
  };
}
