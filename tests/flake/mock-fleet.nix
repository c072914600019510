# Stand-ins for nixpkgs and deploy-rs, so lib/deploy-nodes.nix and flake.nix's deploy wiring can
# be evaluated here with builtins alone (no nixpkgs, no network).
#
#   configs        nixosConfigurations-shaped mocks: Alpha and Beta enable the deploy user,
#                  Template does not. Only the attributes deploy-nodes.nix reads exist.
#   activate       system -> { nixos, custom }, shaped like deploy-rs.lib.<system>.activate.
#                  With introspect = true the profile paths become attrsets recording what the
#                  generator passed in (under `introspection`; they still interpolate as a path
#                  named after the md5 of their script); otherwise store-path-like strings (what
#                  the schema wants).
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

  # An introspected profile path: a string in scripts (its __toString, which also makes
  # builtins.toJSON print it), the generator's arguments under `introspection`.
  introspected = name: record: {
    __toString = _: "/nix/store/${fakeHash}-activatable-${name}";
    introspection = record;
  };

  activateFor = system: {
    nixos = base:
      let host = base.config.networking.hostName; in
      if introspect then introspected "nixos-system-${host}" { kind = "nixos"; inherit system host; }
      else "/nix/store/${fakeHash}-activatable-nixos-system-${host}";
    custom = {
      __functor = self: base: script:
        if introspect then
          # Named after the script, so a test can tell which closure another one references.
          introspected (builtins.hashString "md5" script) {
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
