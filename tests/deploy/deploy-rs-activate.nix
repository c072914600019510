# The deploy-rs profiles of one host, made by deploy-rs's own activation functions (its
# flake.nix: lib.activate.custom and activate.nixos, through the flake's overlay) fed to the
# fleet's real generator (lib/deploy-nodes.nix). Only nixpkgs' builders stand in: each
# writeTextFile / buildEnv is a derivation that is never built, whose attributes say what it
# would hold; the test (test_deploy_rollback_rules.py) lays each one out in the store itself.
#
#   import ./deploy-rs-activate.nix { lib, deployRs, runtimeShell, root, toplevel, design }
#     lib           nixpkgs' lib directory (NIXPKGS_LIB)
#     deployRs      a deploy-rs source tree (DEPLOY_RS_SRC)
#     runtimeShell  the bash that runs the scripts here
#     root          a temporary root: profiles, /run and the ESP of the host are moved under it
#     toplevel      { name; outPath; } a system the test put in the store
#     design        "main": the main deploy's `system` profile;
#                   "test": the test-branch profile of today's design;
#                   "old-test": the design before it (test deploys in the system profile)
#     => { drvPath; profilePath; }   profilePath null: the system profile
{ lib, deployRs, runtimeShell, root, toplevel, design }:
let
  nixpkgsLib = import lib;

  # A derivation nobody builds: the test reads its attributes with `nix show-derivation`.
  standIn = kind: attrs: derivation ({
    system = builtins.currentSystem;
    builder = "/ndh-stand-in-never-built";
    ndhKind = kind;
  } // attrs);

  final = rec {
    lib = nixpkgsLib;
    inherit runtimeShell;
    writeTextFile = { name, text, executable ? false, destination ? "" }:
      standIn "writeTextFile" {
        inherit name text destination;
        executable = if executable then "1" else "";
      };
    writeScript = name: text: writeTextFile { inherit name text; executable = true; };
    buildEnv = { name, paths }: standIn "buildEnv" { inherit name paths; };
    # Only named inside the activate-rs wrapper; the test plays activate-rs itself.
    deploy-rs.deploy-rs = writeTextFile {
      name = "deploy-rs-stand-in";
      destination = "/bin/activate";
      executable = true;
      text = ''
        #!${runtimeShell}
        echo "activate-rs is played by the test, not run" >&2
        exit 1
      '';
    };
  };

  flake = import (deployRs + "/flake.nix");
  # Only overlays.default is read; the per-system half (flake-utils) stays empty.
  outputs = flake.outputs {
    self = outputs;
    nixpkgs = throw "deploy-rs's nixpkgs input is not used here";
    utils.lib = { defaultSystems = [ ]; eachSystem = _: _: { }; };
  };
  activate = (outputs.overlays.default final { }).deploy-rs.lib.activate;

  profiles = "${root}/nix/var/nix/profiles";
  testBranch = import ../../lib/test-branch-activation.nix {
    systemProfile = "${profiles}/system";
    testProfile = "${profiles}/homelab-test";
    returnPoint = "${root}/run/homelab-deploy/test-return-point";
    currentSystem = "${root}/run/current-system";
  };

  host = {
    config = {
      networking.hostName = "Box";
      nixpkgs.hostPlatform.system = builtins.currentSystem;
      system.build.toplevel = toplevel;
      boot.loader.systemd-boot.enable = true;
      boot.loader.efi.efiSysMountPoint = "${root}/boot";
      homelab.users.deploy.enable = true;
      homelab.deploy = {
        targetHost = "box.test";
        sshUser = "deploy";
        sshOpts = [ ];
        magicRollback = true;
        autoRollback = true;
        confirmTimeout = 30;
        activationTimeout = null;
        tempPath = "/tmp";
        fastConnection = false;
      };
    };
  };

  generated = testHost: (import ../../lib/deploy-nodes.nix {
    activate = _: activate;
    inherit testHost testBranch;
  } { Box = host; }).nodes.Box.profiles;

  # The old design, as the generator had it: a test deploy was a custom profile in the system
  # profile, and `--boot` was refused by the activation script alone.
  oldTest = {
    path = (activate.custom // {
      dryActivate = "$PROFILE/bin/switch-to-configuration dry-activate";
      boot = ''
        echo "homelab: a test-<hostname> deploy never changes the boot loader; deploy from main for --boot" >&2
        exit 1
      '';
    }) toplevel ''
      cd /tmp
      $PROFILE/bin/switch-to-configuration test
    '';
    profilePath = null;
  };

  profile = {
    main = (generated "").system // { profilePath = null; };
    test = (generated "Box").test;
    old-test = oldTest;
  }.${design};
in
{
  drvPath = profile.path.drvPath;
  inherit (profile) profilePath;
}
