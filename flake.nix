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

      # ---- Scenario checks (docs/scenario-checks.md) ----------------------------------------
      # checks.<system>.scenario-<name>: one per scenario file, run by pytest in the build
      # sandbox on a builder with the `kvm` and `nixos-test` features, against the nodes of
      # test/vm-test.nix, with the harness from this flake's own package.
      scenarioChecks = import ./test/scenario-checks.nix {
        inherit pkgs;
        harness = self.packages.${system}.deploy-harness;
        nodes = (import ./test/fleet { inherit nixpkgs deploy-rs sops-nix system; }).vmTest.nodes;
      };
      # ---- end of the scenario checks -------------------------------------------------------
    in
    {
      nixosConfigurations = hosts;

      deploy = deployNodes self.nixosConfigurations;

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
      };

      checks.${system} =
        # deploy-rs's own: the deploy output matches its schema, every profile is activatable.
        deploy-rs.lib.${system}.deployChecks self.deploy
        // {
          # Builds the exporter, which runs shellcheck on it.
          nixos-generation-exporter = self.packages.${system}.nixos-generation-exporter;

          # The NixOS test (test/vm-test.nix): deployer, targets and cache VMs; its testScript
          # deploys a baseline and then a switch with deploy-rs. Needs a builder with KVM. The
          # harness builds its nodes' VMs from here: vm-test.nodes.<node>.system.build.vm.
          vm-test = (import ./test/fleet { inherit nixpkgs deploy-rs sops-nix system; }).vmTest;

          # The main deploy command must only ever see `system` profiles.
          main-deploy-profiles =
            let
              offending = builtins.filter
                (name: builtins.attrNames self.deploy.nodes.${name}.profiles != [ "system" ])
                (builtins.attrNames self.deploy.nodes);
            in
            if offending == [ ] then pkgs.runCommand "main-deploy-profiles" { } "touch $out"
            else throw "deploy.nodes has profiles other than `system` on: ${toString offending} (was HOMELAB_DEPLOY_TEST_HOST set with --impure?)";
        }
        # The scenarios, one check per file (docs/scenario-checks.md).
        // scenarioChecks;

      # Hydra (a flake jobset builds `hydraJobs`): the scenario checks, one job each.
      hydraJobs.scenarios.${system} = scenarioChecks;

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
          # The Debian recipe of the micro image is not used here (NDH_MICRO_IMAGE below), but
          # the self-tests format disks and pack initramfs with these.
          pkgs.cpio
          pkgs.e2fsprogs
        ];
        # Import the in-repo harness without installing it; the Nix-built micro image unless
        # one is given.
        shellHook = ''
          export PYTHONPATH="$PWD''${PYTHONPATH:+:$PYTHONPATH}"
          export NDH_MICRO_IMAGE="''${NDH_MICRO_IMAGE:-${harnessPackages.micro-image}}"
        '';
      };
    };
}
