# Every scenario file as a Nix check (docs/scenario-checks.md): one derivation per file
# scenarios/test_<x>.py (vmChecks.<system>.scenario-<x>) and scenarios/regressions/test_<x>.py
# (scenario-regression-<x>), "_" written "-". Each runs, in the build sandbox, the command a user
# types for that file (`pytest scenarios/<file> ...`, the derivation's `command`) against the
# NixOS test nodes' start scripts, which are inputs of the derivation: no nix and no network
# inside. A new scenario file gets its check without editing Nix.
#
#   import ./test/scenario-checks.nix { pkgs, harness, nodes, src ? ../. }
#     pkgs     nixpkgs of the builder's system (runCommand, python3, vde2)
#     harness  the harness package (flake.nix: packages.<system>.deploy-harness): the pytest
#              plugin and its dependencies
#     nodes    the NixOS test's evaluated nodes (runNixOSTest's `.nodes`); the variants are part
#              of them (every target's homelabTest.variants, preloaded on the deployer)
#     src      the repository; each check sees only the files `sourceFiles` lists for it
#   => { "scenario-<x>" = derivation; ... }
#
# A check fails when its scenario fails, or when any test in it was skipped (a check that
# skipped proved nothing; xfail of the regressions is not a skip). Nix keeps nothing of a failed
# build: `nix build --keep-failed` keeps its build directory, with results/ (JUnit XML and
# artifacts) in its `repo` folder.
{ pkgs, harness, nodes, src ? ../. }:
let
  # test_preflight.py boots the micro image, which the harness builds from the host's kernel
  # and busybox: a build sandbox has neither. In a check, the NixOS nodes booting is the
  # pre-flight.
  notChecks = [ "scenarios/test_preflight.py" ];

  # What every scenario imports or reads besides its own file: pytest's configuration, the
  # scenarios' conftest and shared modules, the public and test keys the scenarios read
  # (scenario_fleet.KEYS), the test fleet's facts (scenario_fleet.FACTS), and ci/deploy-plan, which the signed-closures scenario runs on the
  # host to get CI's signing command.
  sharedFiles =
    [ "pyproject.toml" "conftest.py" "test/fleet/keys" "test/fleet/facts.json" "ci/deploy-plan" "ci/cilib.py" ]
    ++ map (name: "scenarios/${name}") (builtins.filter
      (name: name == "conftest.py" || builtins.match "scenario_.*\\.py" name != null)
      (builtins.attrNames (builtins.readDir (src + "/scenarios"))))
    ++ (if builtins.pathExists (src + "/scenarios/regressions/conftest.py")
        then [ "scenarios/regressions/conftest.py" ] else [ ]);

  scenarioFilesIn = dir: prefix:
    let entries = if builtins.pathExists (src + "/${dir}") then builtins.readDir (src + "/${dir}") else { }; in
    builtins.concatMap
      (name:
        let m = builtins.match "test_(.*)\\.py" name; in
        if entries.${name} == "regular" && m != null && !(builtins.elem "${dir}/${name}" notChecks)
        then [{ file = "${dir}/${name}"; check = prefix + builtins.replaceStrings [ "_" ] [ "-" ] (builtins.head m); }]
        else [ ])
      (builtins.attrNames entries);

  scenarios = scenarioFilesIn "scenarios" "scenario-"
    ++ scenarioFilesIn "scenarios/regressions" "scenario-regression-";

  hasPrefix = prefix: s: builtins.substring 0 (builtins.stringLength prefix) s == prefix;

  # Only these files: a change anywhere else leaves the check's derivation unchanged.
  sourceFiles = file: sharedFiles ++ [ file ];
  sourceFor = check: file:
    let
      root = toString src;
      wanted = sourceFiles file;
      keep = path: type:
        let rel = builtins.substring (builtins.stringLength root + 1) (-1) (toString path); in
        builtins.any (w: rel == w || hasPrefix "${w}/" rel || (type == "directory" && hasPrefix "${rel}/" w)) wanted;
    in
    builtins.path { name = "${check}-source"; path = src; filter = keep; };

  # The report options: JUnit XML with each test's output, and the artifacts of failed tests.
  # --vm-accel=kvm: the builder has KVM (system feature `kvm`); without it, `auto` would fall
  # back to "micro only" and skip every scenario.
  command = file: "pytest ${file} --vm-accel=kvm --junitxml=results/junit.xml -o junit_logging=system-out --vm-artifacts=results/artifacts";

  # The harness as an importable module next to pytest (an application's modules are not
  # importable from python.withPackages; toPythonModule makes them so).
  python = pkgs.python3.withPackages (ps: [ ps.pytest (ps.toPythonModule harness) ]);

  # Each node's start script, the built `system.build.vm` (its store path makes it an input).
  nodeScripts = builtins.mapAttrs (name: node: "${node.system.build.vm}/bin/run-${name}-vm") nodes;

  scenarioCheck = { file, check }:
    pkgs.runCommand check
      {
        requiredSystemFeatures = [ "kvm" "nixos-test" ];
        nativeBuildInputs = [ python pkgs.vde2 ];
        NDH_NODE_SCRIPTS = builtins.toJSON nodeScripts;
        scenarioSource = sourceFor check file;
        passthru = { scenarioFile = file; command = command file; sourceFiles = sourceFiles file; };
        meta.description = "The scenario ${file} on the NixOS test nodes (needs KVM)";
      }
      ''
        cp -r --no-preserve=mode "$scenarioSource" repo
        cd repo
        # The harness's state, runtime and cache directories: the sandbox's HOME is not writable.
        export HOME="$TMPDIR/home" NDH_STATE_DIR="$TMPDIR/state" NDH_FLEETS_DIR="$TMPDIR/fleets" NDH_CACHE_DIR="$TMPDIR/cache"
        # Private, as the harness requires of its state and fleets roots (the sandbox's umask is 022).
        mkdir -p "$HOME" "$NDH_CACHE_DIR" results
        mkdir -p -m 0700 "$NDH_STATE_DIR" "$NDH_FLEETS_DIR"

        status=0
        ${command file} || status=$?

        if [ "$status" -eq 0 ] && grep -o '<skipped[^>]*' results/junit.xml | grep -v 'type="pytest.xfail"' >&2; then
          echo "${check}: the tests above were skipped; a check that skips proves nothing" >&2
          status=1
        fi
        if [ "$status" -ne 0 ]; then
          echo "${check}: ${file} failed (pytest exit status $status). Its JUnit XML and artifacts are in" >&2
          echo "$PWD/results; rerun with 'nix build --keep-failed' to keep them (the repo folder of the kept build directory)" >&2
          exit 1
        fi
        mkdir -p "$out"
        cp -r results/. "$out/"
      '';
in
builtins.listToAttrs (map (s: { name = s.check; value = scenarioCheck s; }) scenarios)
