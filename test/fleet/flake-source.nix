# The deployer's fleet flake as a store path: this repository's Nix code (lib, modules, users,
# test) plus the generated flake.nix of ./flake-text.nix. The deployer copies it to /root/fleet
# and locks it offline (./nodes/deployer.nix).
#   import ./flake-source.nix { pkgs, lib, nixpkgs, deploy-rs, sops-nix } => { flake; inputPaths; }
{ pkgs, lib, nixpkgs, deploy-rs, sops-nix }:
let
  repo = ../..;
  wanted = [ "lib" "modules" "users" "test" ];
  source = builtins.path {
    name = "ndh-fleet-source";
    path = repo;
    filter = path: _type:
      let relative = lib.removePrefix (toString repo + "/") (toString path); in
      builtins.elem (builtins.head (lib.splitString "/" relative)) wanted;
  };
  generated = import ./flake-text.nix { inherit nixpkgs deploy-rs sops-nix; };
  flakeNix = pkgs.writeText "flake.nix" generated.text;
in
{
  flake = pkgs.runCommand "ndh-fleet" { } ''
    cp -r ${source} $out
    chmod u+w $out
    cp ${flakeNix} $out/flake.nix
  '';
  inherit (generated) inputPaths;
}
