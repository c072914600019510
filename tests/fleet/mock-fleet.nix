# Stand-ins for nixpkgs and deploy-rs, so lib/deploy-nodes.nix and flake.nix's deploy wiring can
# be evaluated here with builtins alone (no nixpkgs, no network).
#
#   configs        nixosConfigurations-shaped mocks: Alpha and Beta enable the deploy user,
#                  Template does not. Only the attributes deploy-nodes.nix reads exist.
#   activate       system -> { nixos, custom }, shaped like deploy-rs.lib.<system>.activate.
#                  With introspect = true the profile paths become attrsets recording what the
#                  generator passed in; otherwise store-path-like strings (what the schema wants).
#   nixpkgs        { lib.nixosSystem } returning the mock for the host folder it is given (the
#                  first module, as lib/host-modules.nix orders them), with the modules it was
#                  given as `passedModules`.
#   deploy-rs      { lib.<system>.activate }.
#   sops-nix       { nixosModules.sops }: an empty module.
{ introspect ? false }:
let
  fakeHash = "0123456789abcdfghijklmnpqrsvwxyz"; # 32 characters of Nix's base-32 alphabet

  mkConfig = { name, deployUser, targetHost, activationTimeout ? null, tempPath ? "/tmp" }: {
    config = {
      networking.hostName = name;
      nixpkgs.hostPlatform.system = "x86_64-linux";
      system.build.toplevel = "/nix/store/${fakeHash}-nixos-system-${name}";
      homelab.users.deploy.enable = deployUser;
      homelab.deploy = {
        inherit targetHost activationTimeout tempPath;
        sshUser = "deploy";
        sshOpts = [ ];
        magicRollback = true;
        autoRollback = true;
        confirmTimeout = 30;
        fastConnection = false;
      };
    };
  };

  configs = {
    Alpha = mkConfig { name = "Alpha"; deployUser = true; targetHost = "192.0.2.10"; };
    Beta = mkConfig { name = "Beta"; deployUser = true; targetHost = "beta.example"; activationTimeout = 20; tempPath = "/var/lib/deploy-rs"; };
    Template = mkConfig { name = "Template"; deployUser = false; targetHost = "template.example"; };
  };

  activateFor = system: {
    nixos = base:
      if introspect then { kind = "nixos"; inherit system; host = base.config.networking.hostName; }
      else "/nix/store/${fakeHash}-activatable-nixos-system-${base.config.networking.hostName}";
    custom = {
      __functor = self: base: script:
        if introspect then {
          kind = "custom";
          inherit system base script;
          boot = self.boot or null;
          dryActivate = self.dryActivate or null;
        }
        else "/nix/store/${fakeHash}-activatable-${baseNameOf base}";
    };
  };
in
{
  inherit configs;
  activate = activateFor;

  nixpkgs.lib.nixosSystem = { modules, ... }:
    configs.${baseNameOf (toString (builtins.head modules))} // { passedModules = modules; };

  deploy-rs.lib.x86_64-linux.activate = activateFor "x86_64-linux";

  sops-nix.nixosModules.sops = { };
}
