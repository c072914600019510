# The deployer's fleet flake as a store path: this repository's Nix code (lib, modules, users,
# test) plus the generated flake.nix of ./flake-text.nix. The deployer copies it to /root/fleet
# and locks it offline (./nodes/deployer.nix).
#   import ./flake-source.nix { pkgs, lib, nixpkgs, deploy-rs, sops-nix } => { flake; source; inputPaths; }
{ pkgs, lib, nixpkgs, deploy-rs, sops-nix }:
let
  repo = ../..;
  wanted = [ "lib" "modules" "users" "test" ];
  # The targets' private test host key stays out of the deployer's store: the deployer stands
  # for CI, which must hold no key that decrypts a host's secrets (scenarios/test_secrets.py).
  unwanted = [ "test/fleet/keys/target-host-ed25519" ];
  source = builtins.path {
    name = "ndh-fleet-source";
    path = repo;
    filter = path: _type:
      let relative = lib.removePrefix (toString repo + "/") (toString path); in
      builtins.elem (builtins.head (lib.splitString "/" relative)) wanted
      && !(builtins.elem relative unwanted);
  };
  generated = import ./flake-text.nix { inherit nixpkgs deploy-rs sops-nix; };
  flakeNix = pkgs.writeText "flake.nix" generated.text;
in
{
  inherit source;
  flake = pkgs.runCommand "ndh-fleet" { } ''
    cp -r ${source} $out
    chmod u+w $out
    cp ${flakeNix} $out/flake.nix
  '';
  inherit (generated) inputPaths;
}
