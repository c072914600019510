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
  targetNodes = (builtins.fromJSON (builtins.readFile ./facts.json)).targets;

  configurationsOf = node:
    let variants = nodes.${node}.homelabTest.variants; in
    map (variant: { name = "${node}-${variant}"; value = variants.${variant}; })
      (builtins.attrNames variants);

  nixosConfigurations = builtins.listToAttrs (builtins.concatMap configurationsOf targetNodes);
  names = builtins.attrNames nixosConfigurations;

  # lib/deploy-nodes.nix called once per configuration: the node names are known without
  # evaluating any variant (lib/deploy-nodes.nix itself filters on each host's
  # homelab.users.deploy.enable), and deploying one variant evaluates that variant alone. One
  # call over all configurations would evaluate all of them (2 targets x every variant, each
  # a full NixOS evaluation) in the deployer's memory for every deploy.
  deployNodes = import ../../lib/deploy-nodes.nix;
  nodeOf = name:
    (deployNodes { inherit activate; } { ${name} = nixosConfigurations.${name}; }).nodes.${name}
      or (throw "test/fleet/outputs.nix: ${name} has no deploy user (homelab.users.deploy.enable), so it is no deploy node");
  requestedTestHost = if testHost == null then "" else testHost;

  deploy =
    if requestedTestHost == "" then
      { nodes = builtins.listToAttrs (map (name: { inherit name; value = nodeOf name; }) names); }
    else
      # A test-branch deploy: the requested host alone (all of them only for the error that
      # lists the deployable hosts).
      deployNodes { inherit activate testHost; }
        (if nixosConfigurations ? ${requestedTestHost}
         then { ${requestedTestHost} = nixosConfigurations.${requestedTestHost}; }
         else nixosConfigurations);
in
{
  inherit nixosConfigurations deploy;
}
