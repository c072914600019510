# The fleet the scenarios deploy: each target node's variants (./variants) as NixOS
# configurations named "<node>-<variant>", and deploy-rs's `deploy` output generated from them by
# lib/deploy-nodes.nix, exactly as the real fleet's flake.nix generates its own.
#
#   import ./outputs.nix { nodes, activate, testHost ? "" }
#     nodes     the NixOS test's nodes (runNixOSTest's `.nodes`, or the `nodes` module argument):
#               each target node exposes `homelabTest.variants` (./nodes/target.nix)
#     activate  system -> deploy-rs.lib.<system>.activate
#     testHost  "" for the main deploy; "<node>-<variant>" for that configuration's test-branch
#               profile (HOMELAB_DEPLOY_TEST_HOST, as in the real flake)
#   => { nixosConfigurations; deploy; }
{ nodes, activate, testHost ? "" }:
let
  targetNodes = [ "target" "target2" ];

  configurationsOf = node:
    let variants = nodes.${node}.homelabTest.variants; in
    map (variant: { name = "${node}-${variant}"; value = variants.${variant}; })
      (builtins.attrNames variants);

  nixosConfigurations = builtins.listToAttrs (builtins.concatMap configurationsOf targetNodes);
in
{
  inherit nixosConfigurations;
  deploy = import ../../lib/deploy-nodes.nix { inherit activate testHost; } nixosConfigurations;
}
