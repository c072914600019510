# Generates deploy-rs's `deploy` output from a set of NixOS configurations.
#
#   import ./lib/deploy-nodes.nix { activate, testHost ? "", testBranch ? ... } nixosConfigurations
#     => { nodes = { <Host> = <deploy-rs node>; ... }; }
#
# Arguments
#   activate      system -> { nixos, custom }: deploy-rs's activation functions for a platform,
#                 i.e. `system: deploy-rs.lib.${system}.activate`. Passed in (not imported) so this
#                 file evaluates with builtins alone: the tests call it with mocks, no nixpkgs.
#   testHost      "" (or null) for the main deploy. A host name asks for a test-branch deploy of
#                 that one host. flake.nix passes `builtins.getEnv "HOMELAB_DEPLOY_TEST_HOST"`,
#                 which is always "" under pure evaluation, so `deploy .` can never see it.
#   testBranch    lib/test-branch-activation.nix applied to its paths; the default is the real
#                 host's. The tests pass one moved under a temporary root, so deploy-rs's own
#                 activation scripts can run against real profiles without touching the host's.
#   nixosConfigurations
#                 attrset of evaluated NixOS systems. Each is read through `config`:
#                   homelab.users.deploy.enable          only hosts with the deploy user are nodes
#                   homelab.deploy.{targetHost, sshUser, sshOpts, magicRollback, autoRollback,
#                     confirmTimeout, activationTimeout, tempPath, fastConnection}
#                   nixpkgs.hostPlatform.system          picks the activation functions
#                   system.build.toplevel                what the test profile activates
#
# Result
#   main deploy : every deployable host is a node with exactly one profile, `system`
#                 (activate.nixos: switch-to-configuration switch, or boot with `deploy --boot`).
#   test deploy : only the requested host, with exactly one profile, `test`: activate.custom
#                 running `switch-to-configuration test` on the toplevel, in a profile of its
#                 own (lib/test-branch-activation.nix says why and how its rollback works). The
#                 system profile and the boot loader only ever see main deploys, so a reboot
#                 returns to the last main deploy whatever rolled back (docs/deploy-rules.md).
#
# Deploy-rs schema: interface.json in serokell/deploy-rs (node: hostname + generic settings +
# profiles; profile: path, profilePath).
{ activate, testHost ? "", testBranch ? import ./test-branch-activation.nix { } }:
nixosConfigurations:
let
  requestedTestHost = if testHost == null then "" else testHost;

  hasDeployUser = nixos: nixos.config.homelab.users.deploy.enable or false;

  allNames = builtins.attrNames nixosConfigurations;
  deployableNames = builtins.filter (name: hasDeployUser nixosConfigurations.${name}) allNames;
  undeployableNames = builtins.filter (name: !hasDeployUser nixosConfigurations.${name}) allNames;

  activationFor = nixos: activate nixos.config.nixpkgs.hostPlatform.system;

  # Settings shared by both kinds of node; deploy-rs merges node settings into each profile.
  nodeSettings = nixos:
    let d = nixos.config.homelab.deploy; in
    {
      hostname = d.targetHost;
      sshUser = d.sshUser;
      user = "root";
      sshOpts = d.sshOpts;
      magicRollback = d.magicRollback;
      autoRollback = d.autoRollback;
      confirmTimeout = d.confirmTimeout;
      # deploy-rs ignores its --temp-path flag (docs/deploy-rs-facts.md): the flake value is the
      # one used, and the deploy user's sudo rule for removing the canary is generated from the
      # same option.
      tempPath = d.tempPath;
      fastConnection = d.fastConnection;
    }
    // (if d.activationTimeout == null then { } else { activationTimeout = d.activationTimeout; });

  systemProfile = nixos: {
    path = (activationFor nixos).nixos nixos;
  };

  testProfile = nixos:
    let
      activation = activationFor nixos;
      toplevel = nixos.config.system.build.toplevel;
      # What deploy-rs's rollback runs: it sits one generation below the test closure.
      returnClosure = activation.custom toplevel testBranch.returnToPrevious;
    in
    {
      path =
        (activation.custom // {
          inherit (testBranch) dryActivate;
          # `deploy --boot` would make a test branch the boot default: refuse, loudly.
          boot = testBranch.refuseBoot returnClosure;
        })
          toplevel
          (testBranch.activate returnClosure);
      profilePath = testBranch.testProfile;
    };

  listNames = names: if names == [ ] then "(none)" else builtins.concatStringsSep ", " names;

  unknownTestHost = throw ''
    HOMELAB_DEPLOY_TEST_HOST="${requestedTestHost}" is not a deployable host.
    Deployable hosts (homelab.users.deploy.enable = true): ${listNames deployableNames}
    Hosts without the deploy user: ${listNames undeployableNames}
    Use the part of the branch name after "test-", spelled exactly as the host folder under hosts/.'';

  mainNodes = builtins.listToAttrs (map
    (name:
      let nixos = nixosConfigurations.${name}; in
      {
        inherit name;
        value = nodeSettings nixos // { profiles.system = systemProfile nixos; };
      })
    deployableNames);

  testNodes =
    if builtins.elem requestedTestHost deployableNames then
      let nixos = nixosConfigurations.${requestedTestHost}; in
      {
        ${requestedTestHost} = nodeSettings nixos // { profiles.test = testProfile nixos; };
      }
    else unknownTestHost;
in
{
  nodes = if requestedTestHost == "" then mainNodes else testNodes;
}
