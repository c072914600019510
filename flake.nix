{
  description = "Homelab NixOS fleet, deployed with deploy-rs (push-based, magic rollback)";

  inputs = {
    # Current stable release branch (26.11 is not released yet; 25.11 reached end of life in June 2026).
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

    # Needs upstream PR #385 ("fix: eliminate activation confirmation race", approved and merged
    # after 2026-09-01):
    # before it, activate-rs created the canary before watching it, so a fast deployer could
    # confirm too early and the host rolled back a deploy that had succeeded. No revision
    # containing the merge could be pinned where this flake was written (no network); the
    # first `nix flake lock` takes master's head, which has it. Check the locked revision:
    #   git -C <deploy-rs clone> merge-base --is-ancestor <merge commit of #385> <locked rev>
    # and record it here as `github:serokell/deploy-rs/<rev>` (docs/fleet.md, "First `nix flake
    # lock`").
    deploy-rs = {
      url = "github:serokell/deploy-rs";
      inputs.nixpkgs.follows = "nixpkgs";
    };

    # Secrets decrypted on each host at activation with its own key (docs/secrets.md).
    sops-nix = {
      url = "github:Mic92/sops-nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs = { self, nixpkgs, deploy-rs, sops-nix, ... }:
    let
      # Platform of the deployer, the checks and the dev shell. Hosts pick their own
      # (nixpkgs.hostPlatform in hosts/common.nix).
      system = "x86_64-linux";

      # One folder per host under hosts/; adding a folder adds the host (docs/fleet.md, "Adding a host").
      # Every host also gets sops-nix's module and the facts generated from the whole fleet.
      hosts = import ./lib/fleet-hosts.nix {
        inherit (nixpkgs.lib) nixosSystem;
        modules = [ sops-nix.nixosModules.sops ];
      };

      # HOMELAB_DEPLOY_TEST_HOST is read with getEnv, which returns "" under pure evaluation.
      # `deploy .` and `nix flake check` evaluate purely, so only the main profiles exist for
      # them; the test profile needs `HOMELAB_DEPLOY_TEST_HOST=<Host> deploy --skip-checks .#<Host>.test --
      # --impure` (docs/fleet.md, "Deploying").
      deployNodes = import ./lib/deploy-nodes.nix {
        activate = hostSystem: deploy-rs.lib.${hostSystem}.activate;
        testHost = builtins.getEnv "HOMELAB_DEPLOY_TEST_HOST";
      };

      pkgs = nixpkgs.legacyPackages.${system};

      # The harness itself (nix/): the Python package with its CLI and pytest plugin, the micro
      # image built by Nix (no Debian tools needed), and the two commands of the README.
      harnessPackages = {
        deploy-harness = pkgs.callPackage ./nix/package.nix { };
        micro-image = pkgs.callPackage ./nix/micro-image.nix { };
      };
      harnessApps = pkgs.callPackage ./nix/apps.nix { inherit (harnessPackages) deploy-harness micro-image; };
      app = drv: { type = "app"; program = pkgs.lib.getExe drv; };

      # ---- The VM suite (docs/ci.md, "Which checks gate what") -------------------------------
      # The test fleet (test/fleet), evaluated once: the NixOS test and the scenario checks
      # share its nodes.
      testFleet = import ./test/fleet { inherit nixpkgs deploy-rs sops-nix system; };

      # scenario-<name>: one check per scenario file, run by pytest in the build sandbox against
      # the test fleet's nodes, with the harness from this flake's own package
      # (docs/scenario-checks.md).
      scenarioChecks = import ./test/scenario-checks.nix {
        inherit pkgs;
        harness = self.packages.${system}.deploy-harness;
        inherit (testFleet.vmTest) nodes;
      };

      # Every derivation here boots NixOS VMs: a builder with the `kvm` and `nixos-test`
      # features and about 10 GiB of memory per build. None of them is in `checks`.
      vmChecks =
        {
          # The NixOS test (test/vm-test.nix): deployer, targets and cache VMs; its testScript
          # deploys a baseline and then a switch with deploy-rs. The harness builds its nodes'
          # VMs from here: vm-test.nodes.<node>.system.build.vm.
          vm-test = testFleet.vmTest;
        }
        // scenarioChecks;
      # ---- end of the VM suite --------------------------------------------------------------
    in
    {
      # Each host's twin, its own configuration as a VM the harness can drive, is its VM variant:
      # nixosConfigurations.<Host>.config.system.build.vm (twins/, docs/twins.md).
      nixosConfigurations = hosts;

      deploy = deployNodes self.nixosConfigurations;

      # The twins as deploy-rs nodes (lib/twin-deploy.nix): the same generator, each node's
      # profile the twin's own system (its vmVariant's toplevel), not the host's. The harness
      # deploys to booted twins from here (docs/twins.md, "Booting twins").
      twinDeploy = import ./lib/twin-deploy.nix { deployNodes = deployNodes; } self.nixosConfigurations;

      # What `deploy-harness up --twins` reads before it builds anything (lib/twin-facts.nix).
      twinFacts = import ./lib/twin-facts.nix self.nixosConfigurations;

      # The twins' deployer VM (twins/deployer.nix): system.build.vm is what the harness boots.
      # It runs the twins' ACME stand-in when some host's twin requests certificates.
      twinDeployer = nixpkgs.lib.nixosSystem {
        modules = [
          ./twins/deployer.nix
          {
            nixpkgs.hostPlatform = system;
            homelab.twinDeployer = {
              twinAddresses = import ./lib/twin-addresses.nix { } self.nixosConfigurations;
              acme.enable = builtins.any (host: host.acme) (builtins.attrValues self.twinFacts);
              deployRs = deploy-rs.packages.${system}.default;
              preload = map (node: node.profiles.system.path) (builtins.attrValues self.twinDeploy.nodes);
            };
          }
        ];
      };

      nixosModules = {
        default = ./modules;
        deploy-user = ./users/deploy;
        nix-cache = ./modules/common/nix-cache.nix;
        harmonia = ./modules/services/harmonia;
        monitoring = ./modules/services/monitoring;
        secrets = ./modules/secrets;
      };

      packages.${system} = harnessPackages // {
        nixos-generation-exporter = pkgs.callPackage ./modules/services/monitoring/exporter-package.nix { };
      };

      # `nix run .#scenarios [-- PYTEST ARGS]` from the checkout: pytest scenarios/.
      # `nix run .#deploy-harness -- up`: the CLI.
      apps.${system} = {
        scenarios = app harnessApps.scenarios;
        deploy-harness = app harnessApps.deploy-harness;
        # `nix run .#rehearse -- --base REF --head REF [--host NAME ...]`: docs/rehearsal.md.
        rehearse = app harnessApps.rehearse;
      };

      # Fast checks (evaluation, schema, lint; no VM): every push and every deploy runs
      # `nix flake check`, on runners without KVM. A VM test here would make every push boot
      # VMs and fail on those runners: tests/nixos/test_nixos_scenario_checks.py refuses it.
      checks.${system} =
        # deploy-rs's own: the deploy output matches its schema, every profile is activatable.
        deploy-rs.lib.${system}.deployChecks self.deploy
        // {
          # Builds the exporter, which runs shellcheck on it.
          nixos-generation-exporter = self.packages.${system}.nixos-generation-exporter;

          # The main deploy command must only ever see `system` profiles.
          main-deploy-profiles =
            let
              offending = builtins.filter
                (name: builtins.attrNames self.deploy.nodes.${name}.profiles != [ "system" ])
                (builtins.attrNames self.deploy.nodes);
            in
            if offending == [ ] then pkgs.runCommand "main-deploy-profiles" { } "touch $out"
            else throw "deploy.nodes has profiles other than `system` on: ${toString offending} (was HOMELAB_DEPLOY_TEST_HOST set with --impure?)";
        };

      # The VM suite: `nix build .#vmChecks.x86_64-linux.<name>`; the nightly workflow builds
      # all of them on its KVM runner.
      vmChecks.${system} = vmChecks;

      # Hydra (a flake jobset builds `hydraJobs`): the VM suite, one job each. `nix flake check`
      # evaluates hydraJobs without building them, so every push still proves the VM suite
      # evaluates.
      hydraJobs.vmChecks.${system} = vmChecks;

      # What `pytest scenarios/` and `pytest tests/ -n 2` need, and `deploy-harness` on PATH. Self-tests
      # of Debian-only pieces (OVMF files, the node exporter, kmod) skip here, naming what is missing.
      devShells.${system}.default = pkgs.mkShell {
        packages = [
          deploy-rs.packages.${system}.default
          harnessApps.deploy-harness
          (pkgs.python3.withPackages (ps: with ps; [
            pytest
            pexpect
            pytest-xdist
            pytest-testinfra
            tenacity
            psutil
            prometheus-client
            jsonschema
            pyyaml
          ]))
          pkgs.check-jsonschema
          pkgs.qemu
          pkgs.vde2
          pkgs.openssh
          pkgs.shellcheck
          # Secrets (docs/secrets.md) and the alert rules' tests (docs/monitoring.md).
          pkgs.sops
          pkgs.age
          pkgs.ssh-to-age
          pkgs.prometheus
          pkgs.sudo # visudo, for the sudo-rule tests
          pkgs.openssl # the twins' TEST ONLY ACME certificates' checks
          # The Debian recipe of the micro image is not used here (NDH_MICRO_IMAGE below), but
          # the self-tests format disks and pack initramfs with these.
          pkgs.cpio
          pkgs.e2fsprogs
        ];
        # The upstream trees the self-tests evaluate against (tests/support/upstream.py), taken
        # from this flake's own inputs: without them those tests skip, naming the variable.
        NIXPKGS_LIB = "${nixpkgs}/lib";
        DEPLOY_RS_SRC = "${deploy-rs}";
        SOPS_NIX = "${sops-nix}";
        # Import the in-repo harness without installing it; the Nix-built micro image unless
        # one is given.
        shellHook = ''
          export PYTHONPATH="$PWD''${PYTHONPATH:+:$PYTHONPATH}"
          export NDH_MICRO_IMAGE="''${NDH_MICRO_IMAGE:-${harnessPackages.micro-image}}"
        '';
      };
    };
}
