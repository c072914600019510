# The test fleet, one entry point for both places that evaluate it:
#   - flake.nix's VM suite, `vmChecks.<system>` (the host: harness builds, nightly CI);
#   - the deployer's fleet flake (./flake-text.nix), inside the test VM.
# Both call this with the same nixpkgs and deploy-rs store paths, so both evaluate the same
# target configurations, derivation for derivation.
#
#   import ./test/fleet { nixpkgs, deploy-rs, sops-nix, system ? "x86_64-linux", testHost ? "" }
#     => { pkgs; vmTest; nixosConfigurations; deploy; }
{ nixpkgs, deploy-rs, sops-nix, system ? "x86_64-linux", testHost ? "" }:
let
  # `import nixpkgs`, not `nixpkgs.legacyPackages`: a flake's outputs may carry the input's
  # revision, which differs between the host's github: input and the deployer's path: input.
  pkgs = import nixpkgs { inherit system; };

  vmTest = pkgs.testers.runNixOSTest (import ../vm-test.nix { inherit nixpkgs deploy-rs sops-nix; });

  outputs = import ./outputs.nix {
    inherit (vmTest) nodes;
    inherit testHost;
    activate = hostSystem: deploy-rs.lib.${hostSystem}.activate;
  };
in
{
  inherit pkgs vmTest;
  inherit (outputs) nixosConfigurations deploy;
}
