# `deployer`: where deploy-rs runs, as CI or a workstation would run it. It holds the snakeoil
# deploy key (root's identity), deploy-rs, and in the fleet directory (../facts.json, fleetDir) the fleet flake of
# ../flake-source.nix: this repository's Nix code with every flake input pointing at a store path
# the host locked. Every deploy profile of every variant is preloaded into its store, and the
# deployer evaluates the very same expressions as the host, so `deploy` builds nothing and needs
# no network. (If a deploy ever starts building, the two evaluations drifted: the deploy log names
# the derivation.)
{ config, lib, pkgs, nodes, nixpkgs, deploy-rs, sops-nix, ... }:
let
  # Facts the harness's scenarios read too (one source): ../facts.json.
  facts = builtins.fromJSON (builtins.readFile ../facts.json);
  system = pkgs.stdenv.hostPlatform.system;
  snakeOil = import "${pkgs.path}/nixos/tests/ssh-keys.nix" pkgs;
  fleetFlake = import ../flake-source.nix { inherit pkgs lib nixpkgs deploy-rs sops-nix; };

  outputsFor = testHost: import ../outputs.nix {
    inherit nodes testHost;
    activate = hostSystem: deploy-rs.lib.${hostSystem}.activate;
  };
  profilePaths = deploy:
    lib.concatMap (node: map (profile: profile.path) (lib.attrValues node.profiles))
      (lib.attrValues deploy.nodes);
  main = outputsFor "";
  # The test-branch profile of every configuration (they exist only per requested host).
  testProfiles = lib.concatMap (name: profilePaths (outputsFor name).deploy)
    (lib.attrNames main.nixosConfigurations);
in
{
  # sops and age: the secrets scenario checks that the deployer, standing for CI, cannot
  # decrypt what the targets decrypt.
  environment.systemPackages = [ deploy-rs.packages.${system}.default pkgs.sops pkgs.age ];

  # test-instrumentation.nix sets vm.panic_on_oom = 2 (mkDefault): an evaluation that runs out
  # of memory would panic the VM. Here the OOM killer ends nix instead, and the deploy fails
  # with a message (docs/snapshots.md, "The deployer's memory").
  boot.kernel.sysctl."vm.panic_on_oom" = 0;

  virtualisation = {
    # Evaluating NixOS takes memory (deploy-rs's own VM tests give their deployer 4 GiB). A
    # deploy evaluates one variant (../outputs.nix); raise this if a deploy is OOM-killed.
    memorySize = 4096;
    cores = 2;
    diskSize = 8192;
    useNixStoreImage = true;
    writableStore = true;
    writableStoreUseTmpfs = false;
    mountHostNixStore = false;
    sharedDirectories = lib.mkForce { };
    additionalPaths = profilePaths main.deploy ++ testProfiles
      ++ [ fleetFlake.flake ] ++ fleetFlake.inputPaths;
  };

  nix.settings = {
    experimental-features = [ "nix-command" "flakes" ];
    # Offline by construction: no binary cache, no global flake registry.
    substituters = lib.mkForce [ ];
    flake-registry = "";
  };

  # The deploy key as root's default identity (ssh and nix copy pick it up), and the CI
  # closure-signing key where the signed-closures scenario passes it to ci/deploy-plan's sign.
  system.activationScripts.ndh-deploy-key = ''
    install -D -m 0600 ${snakeOil.snakeOilPrivateKey} /root/.ssh/id_ecdsa
    install -D -m 0600 ${(import ../keys).ci.secretFile} /root/ci-signing-key.sec
  '';

  systemd.services.ndh-fleet = {
    description = "Put the fleet flake in ${facts.fleetDir} and lock its inputs, offline";
    wantedBy = [ "multi-user.target" ];
    after = [ "nix-daemon.socket" ];
    path = [ config.nix.package pkgs.coreutils ];
    environment.HOME = "/root";
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
    };
    script = ''
      rm -rf ${facts.fleetDir}
      cp -r --no-preserve=mode ${fleetFlake.flake} ${facts.fleetDir}
      cd ${facts.fleetDir}
      nix --extra-experimental-features 'nix-command flakes' flake lock --offline
    '';
  };
}
