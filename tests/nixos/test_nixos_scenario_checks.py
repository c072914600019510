"""test/scenario-checks.nix, evaluated with builtins only and mock pkgs/nodes (no nixpkgs): one
check per scenario file, found by itself; the system features a KVM builder has; the nodes'
start scripts handed to the harness as NDH_NODE_SCRIPTS; each check's source holding only what
that scenario needs; the command the docs give; and the build script's verdicts, run here with
a stand-in pytest. Whether a check really boots the nodes needs a KVM builder and nixpkgs: not
verified here (docs/scenario-checks.md)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from nixos_testlib import REPO
from support import require

from harness.images.prebuilt import ENV, prebuilt_scripts

CHECKS = REPO / "test" / "scenario-checks.nix"
NODES = ("cache", "deployer", "target", "target2")


def nix_expr(src: Path) -> str:
    nodes = " ".join(
        f'{n} = {{ system.build.vm = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-vm-{n}"; }};' for n in NODES
    )
    return f"""
      import (/. + {json.dumps(str(CHECKS))}) {{
        pkgs = {{
          runCommand = name: env: script: env // {{ inherit name script; }};
          python3.withPackages = f: {{ pythonEnv = f {{ pytest = "pytest"; toPythonModule = x: {{ module = x; }}; }}; }};
          vde2 = "vde2";
        }};
        harness = "the-harness-package";
        nodes = {{ {nodes} }};
        src = /. + {json.dumps(str(src))};
      }}"""


def evaluate(src: Path = REPO, apply: str = "c: removeAttrs c [ \"scenarioSource\" ]", read_write: bool = False):
    require("nix-instantiate")
    args = ["nix-instantiate", "--eval", "--strict", "--json"]
    if read_write:  # builtins.path really copies the filtered source, so it can be listed
        args.append("--read-write-mode")
    result = subprocess.run(
        [*args, "--expr", f"builtins.mapAttrs (name: {apply}) ({nix_expr(src)})"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def expected_names(src: Path) -> dict[str, str]:
    names = {}
    for path in sorted((src / "scenarios").glob("test_*.py")):
        if path.name != "test_preflight.py":
            names["scenario-" + path.stem[len("test_"):].replace("_", "-")] = f"scenarios/{path.name}"
    for path in sorted((src / "scenarios" / "regressions").glob("test_*.py")):
        names["scenario-regression-" + path.stem[len("test_"):].replace("_", "-")] = f"scenarios/regressions/{path.name}"
    return names


def test_one_check_per_scenario_file():
    checks = evaluate()
    assert {name: c["passthru"]["scenarioFile"] for name, c in checks.items()} == expected_names(REPO)
    assert "scenario-magic-rollback" in checks
    assert "scenario-regression-seed-deploy-user" in checks
    assert "scenario-preflight" not in checks, "the micro-image pre-flight cannot run in a sandbox"


def test_a_new_scenario_file_gets_its_check_without_editing_nix(tmp_path):
    (tmp_path / "scenarios" / "regressions").mkdir(parents=True)
    for name in ("conftest.py", "scenario_fleet.py", "test_switch.py", "helper.py"):
        (tmp_path / "scenarios" / name).write_text("")
    (tmp_path / "scenarios" / "test_brand_new_path.py").write_text("")
    (tmp_path / "scenarios" / "regressions" / "test_old_bug.py").write_text("")
    checks = evaluate(tmp_path)
    assert set(checks) == {"scenario-switch", "scenario-brand-new-path", "scenario-regression-old-bug"}
    assert checks["scenario-brand-new-path"]["passthru"]["scenarioFile"] == "scenarios/test_brand_new_path.py"


def test_every_check_needs_a_kvm_builder_and_gets_the_harness_and_the_nodes():
    for name, check in evaluate().items():
        assert check["name"] == name
        assert check["requiredSystemFeatures"] == ["kvm", "nixos-test"], name
        python_env, vde = check["nativeBuildInputs"]
        assert python_env == {"pythonEnv": ["pytest", {"module": "the-harness-package"}]}
        assert vde == "vde2"  # vde_switch, the VLAN the harness starts
        scripts = json.loads(check[ENV])
        assert sorted(scripts) == sorted(NODES)
        for node, script in scripts.items():
            assert script == f"/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-vm-{node}/bin/run-{node}-vm"


def test_the_table_is_what_the_harness_reads(tmp_path):
    """The JSON the check sets is the shape harness/images/prebuilt.py accepts."""
    check = evaluate()["scenario-switch"]
    table = {}
    for node, script in json.loads(check[ENV]).items():
        fake = tmp_path / Path(script).relative_to("/")
        fake.parent.mkdir(parents=True)
        fake.write_text("#!/bin/sh\n")
        fake.chmod(0o755)
        table[node] = str(fake)
    scripts = prebuilt_scripts(NODES, {ENV: json.dumps(table)})
    assert {node: path.name for node, path in scripts.items()} == {n: f"run-{n}-vm" for n in NODES}


def test_each_check_s_source_is_only_what_its_scenario_needs():
    sources = evaluate(apply="c: c.scenarioSource", read_write=True)
    checks = evaluate()
    for name in ("scenario-magic-rollback", "scenario-regression-seed-deploy-user"):
        source = Path(sources[name])
        files = {str(p.relative_to(source)) for p in source.rglob("*") if p.is_file()}
        listed = checks[name]["passthru"]["sourceFiles"]
        scenario = checks[name]["passthru"]["scenarioFile"]
        assert scenario in files
        assert {f for f in files if f.startswith("scenarios/test_") or "/test_" in f} == {scenario}, (
            "another scenario's file would make this check re-run when that one changes"
        )
        for path in files:
            assert any(path == w or path.startswith(w + "/") for w in listed), path
        assert not {"README.md", "flake.nix"} & files and not any(f.startswith(("harness/", "tests/", "docs/")) for f in files)
        assert {"pyproject.toml", "scenarios/conftest.py", "scenarios/scenario_fleet.py", "ci/deploy-plan"} <= files


def test_the_command_is_the_documented_one():
    check = evaluate()["scenario-magic-rollback"]
    command = check["passthru"]["command"]
    assert command.startswith("pytest scenarios/test_magic_rollback.py ")
    assert "--junitxml=results/junit.xml" in command and "-o junit_logging=system-out" in command
    assert "--vm-artifacts=results/artifacts" in command and "--vm-accel=kvm" in command
    assert command in check["script"]
    docs = (REPO / "docs" / "scenario-checks.md").read_text()
    assert command in docs, "docs/scenario-checks.md must show the exact command of the check"
    assert "(docs/scenario-checks.md)" in (REPO / "README.md").read_text()


# --- the build script, with a stand-in pytest ------------------------------------------------

JUNIT = {
    "pass": '<testsuite><testcase name="a"/></testsuite>',
    "xfail": '<testsuite><testcase name="a"><skipped type="pytest.xfail" message="bug"/></testcase></testsuite>',
    "skip": '<testsuite><testcase name="a"><skipped type="pytest.skip" message="no KVM"/></testcase></testsuite>',
}


@pytest.fixture
def run_script(tmp_path):
    require("bash")
    script = evaluate()["scenario-switch"]["script"]
    source = tmp_path / "source"
    (source / "scenarios").mkdir(parents=True)
    (source / "scenarios" / "test_switch.py").write_text("")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()

    def run(junit: str, status: int):
        fake = bin_dir / "pytest"
        fake.write_text(
            "#!/bin/sh\n"
            'echo "$@" > "$TMPDIR/argv"\n'
            "mkdir -p results/artifacts\n"
            f"printf '%s' '{JUNIT[junit]}' > results/junit.xml\n"
            f"exit {status}\n"
        )
        fake.chmod(0o755)
        build = tmp_path / f"build-{junit}-{status}"
        build.mkdir()
        out = tmp_path / f"out-{junit}-{status}"
        env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "TMPDIR": str(build), "out": str(out),
               "scenarioSource": str(source)}
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=build, env=env,
                              capture_output=True, text=True, timeout=60)
        return proc, out, build

    return run


def test_a_passing_scenario_keeps_its_junit_in_the_output(run_script):
    proc, out, build = run_script("pass", 0)
    assert proc.returncode == 0, proc.stderr
    assert (out / "junit.xml").read_text() == JUNIT["pass"]
    assert (build / "argv").read_text().startswith("scenarios/test_switch.py --vm-accel=kvm")


def test_an_expected_failure_of_a_regression_is_not_a_skip(run_script):
    proc, out, _ = run_script("xfail", 0)
    assert proc.returncode == 0, proc.stderr
    assert (out / "junit.xml").exists()


def test_a_skipped_scenario_fails_the_check(run_script):
    proc, out, _ = run_script("skip", 0)
    assert proc.returncode == 1
    assert "no KVM" in proc.stderr and "a check that skips proves nothing" in proc.stderr
    assert not out.exists()


def test_a_failing_scenario_fails_the_check_and_says_where_its_artifacts_are(run_script):
    proc, out, build = run_script("pass", 1)
    assert proc.returncode == 1
    assert "pytest exit status 1" in proc.stderr and "--keep-failed" in proc.stderr
    assert f"{build}/repo/results" in proc.stderr
    assert (build / "repo" / "results" / "junit.xml").exists()
    assert not out.exists()


# --- flake.nix's wiring, with mock inputs ----------------------------------------------------

# runNixOSTest as nixpkgs' nixos/lib/testing/run.nix shapes its result on Linux: a derivation
# that needs the `nixos-test` and `kvm` features, with the evaluated nodes. The trace counts
# how often the test fleet is evaluated.
FAKE_NIXPKGS = """
{ system, ... }: {
  testers.runNixOSTest = test: builtins.trace "ndh: the test fleet is evaluated" {
    type = "derivation";
    name = "vm-test-run-${(test { }).name}";
    requiredSystemFeatures = [ "nixos-test" "kvm" ];
    nodes = builtins.mapAttrs
      (name: _: { system.build.vm = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-vm-${name}"; })
      (test { }).nodes;
  };
}
"""

VM_FEATURES = {"kvm", "nixos-test"}


def flake_outputs(tmp_path: Path, select: str) -> tuple[dict, str]:
    """`select` over flake.nix's outputs (as `out`), with mock nixpkgs, deploy-rs and sops-nix;
    the harness package is replaced by a marker (whatever flake.nix builds it with is not
    evaluated), and `self.deploy` by one node with a `system` profile. Returns the JSON and
    nix's stderr (the traces)."""
    (tmp_path / "default.nix").write_text(FAKE_NIXPKGS)
    mocks = REPO / "tests" / "flake" / "mock-fleet.nix"
    expr = f"""
      let
        m = import (/. + {json.dumps(str(mocks))}) {{ }};
        pkgs = {{
          runCommand = name: env: script: env // {{ type = "derivation"; inherit name script; }};
          callPackage = file: args: {{ type = "derivation"; name = baseNameOf (toString file); }};
          python3.withPackages = f: {{ pythonEnv = f {{ pytest = "pytest"; toPythonModule = x: {{ module = x; }}; }}; }};
          vde2 = "vde2";
        }};
        nixpkgs = m.nixpkgs // {{
          outPath = /. + {json.dumps(str(tmp_path))};
          legacyPackages.x86_64-linux = pkgs;
        }};
        deploy-rs = {{ lib.x86_64-linux = m.deploy-rs.lib.x86_64-linux // {{
          deployChecks = deploy: {{ deploy-schema = pkgs.runCommand "deploy-schema" {{ }} ""; }};
        }}; }};
        flake = import (/. + {json.dumps(str(REPO / "flake.nix"))});
        out = flake.outputs {{
          self = out // {{
            packages.x86_64-linux = out.packages.x86_64-linux // {{ deploy-harness = "mock-harness"; }};
            # The mocks know only their own hosts, not hosts/: main-deploy-profiles reads this.
            deploy.nodes.Alpha.profiles.system = {{ }};
          }};
          inherit nixpkgs deploy-rs;
          inherit (m) sops-nix;
        }};
        features = drv: drv.requiredSystemFeatures or [ ];
      in {select}"""
    require("nix-instantiate")
    result = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def test_the_flake_makes_the_scenario_checks_from_its_harness_package(tmp_path):
    """flake.nix passes its own package `deploy-harness` and the test fleet's nodes to
    test/scenario-checks.nix, and puts every scenario check into `vmChecks` and `hydraJobs`."""
    wired, _ = flake_outputs(tmp_path, """
      let one = out.vmChecks.x86_64-linux.scenario-magic-rollback; in {
        scenario = builtins.filter (n: builtins.substring 0 9 n == "scenario-") (builtins.attrNames out.vmChecks.x86_64-linux);
        hydra = builtins.attrNames out.hydraJobs.vmChecks.x86_64-linux;
        vm = builtins.attrNames out.vmChecks.x86_64-linux;
        harness = builtins.elemAt one.nativeBuildInputs 0;
        scripts = one.NDH_NODE_SCRIPTS;
        features = one.requiredSystemFeatures;
      }""")
    assert sorted(wired["scenario"]) == sorted(expected_names(REPO))
    assert wired["vm"] == sorted(["vm-test", *wired["scenario"]])
    assert wired["hydra"] == wired["vm"]
    assert wired["harness"] == {"pythonEnv": ["pytest", {"module": "mock-harness"}]}
    assert sorted(json.loads(wired["scripts"])) == sorted(NODES)
    assert wired["features"] == ["kvm", "nixos-test"]


def test_no_vm_check_is_in_checks(tmp_path):
    """`checks` is what every push and every deploy build (`nix flake check`, on runners
    without KVM): nothing in it may boot a VM. The VM suite is `vmChecks` (nightly)."""
    wired, _ = flake_outputs(tmp_path, """{
      checks = builtins.mapAttrs (_: features) out.checks.x86_64-linux;
      vmChecks = builtins.mapAttrs (_: features) out.vmChecks.x86_64-linux;
    }""")
    checks, vm_checks = wired["checks"], wired["vmChecks"]
    assert set(checks) == {"deploy-schema", "nixos-generation-exporter", "main-deploy-profiles"}
    assert not set(checks) & set(vm_checks), "a VM check is back in `checks`"
    booting = {name for name, features in checks.items() if VM_FEATURES & set(features)}
    assert not booting, f"checks that need a KVM builder: {sorted(booting)}"
    # The rule can fail: every VM check carries the features it looks for.
    assert {name for name, features in vm_checks.items() if VM_FEATURES <= set(features)} == set(vm_checks)


def test_the_flake_evaluates_the_test_fleet_once(tmp_path):
    """vm-test and the scenario checks share one evaluation of test/fleet (its nodes)."""
    _, stderr = flake_outputs(tmp_path, """
      builtins.seq out.vmChecks.x86_64-linux.vm-test.name
        (builtins.attrNames (builtins.fromJSON out.vmChecks.x86_64-linux.scenario-switch.NDH_NODE_SCRIPTS))""")
    assert stderr.count("ndh: the test fleet is evaluated") == 1, stderr
