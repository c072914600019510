"""The nightly workflow: the README's command for NixOS, and the VM suite (`vmChecks`), which no
push builds; its vm-checks step is run for real against a tiny flake."""

import os
import subprocess

import pytest
from test_ci_workflows import REPO, WORKFLOWS, load, triggers


def test_nightly_has_a_schedule_and_manual_dispatch():
    on = triggers(load("nightly"))
    assert "workflow_dispatch" in on
    crons = [entry["cron"] for entry in on["schedule"]]
    assert crons and all(len(cron.split()) == 5 for cron in crons)


def test_nightly_runs_the_nix_entry_point_on_the_nixos_kvm_runner_and_uploads_artifacts():
    job = load("nightly")["jobs"]["scenarios"]
    assert job["runs-on"] == "nixos-kvm"  # a NixOS host: no apt-get, no Debian tools there
    commands = [s.get("run", "") for s in job["steps"]]
    assert not any("ci/bootstrap" in c or "apt-get" in c or ".venv/" in c for c in commands), commands
    scenario_line = next(line.strip() for c in commands for line in c.splitlines() if ".#scenarios" in line)
    # The README's command for NixOS, from the committed lock, with the artifacts options after `--`.
    assert scenario_line.startswith("nix run --no-update-lock-file .#scenarios -- ")
    assert "--junitxml=artifacts/" in scenario_line and "--vm-artifacts artifacts/" in scenario_line
    upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["uses"] == "actions/upload-artifact@v3"
    assert upload["if"] == "always()"
    assert upload["with"]["path"].startswith("artifacts")


def test_the_readme_gives_the_command_nightly_runs():
    readme = (REPO / "README.md").read_text()
    assert "nix run .#scenarios" in readme and "./ci/bootstrap && .venv/bin/pytest scenarios/" in readme


def test_nightly_runs_the_readme_command_and_builds_the_vm_suite_and_says_why():
    """Issue 20: the VM suite (vmChecks) left `checks`; nightly is where it is built, beside the
    README's pytest command, and its header says what each job proves."""
    text = (WORKFLOWS / "nightly.yml").read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    jobs = load("nightly")["jobs"]
    assert set(jobs) == {"scenarios", "vm-checks"}
    commands = {job_id: " ".join(" ".join(s.get("run", "").split()) for s in job["steps"]) for job_id, job in jobs.items()}
    assert ".#scenarios" in commands["scenarios"] and "vmChecks" not in commands["scenarios"]
    assert ".#vmChecks.x86_64-linux" in commands["vm-checks"] and "nix build" in commands["vm-checks"]
    assert "--keep-going" in commands["vm-checks"], "one failing VM check must not hide the others"
    for job_id in jobs:
        assert jobs[job_id]["runs-on"] == "nixos-kvm", job_id
    assert "README" in header and "vmChecks" in header and "docs/ci.md" in header
    assert "docs/scenario-checks.md" in header


VM_CHECKS_FLAKE = """\
{
  outputs = { self }:
    let
      check = name: script: derivation {
        name = "${name}-@STAMP@"; system = "x86_64-linux"; builder = "/bin/sh";
        args = [ "-c" "${script}/bin/mkdir $out" ];
      };
    in {
      vmChecks.x86_64-linux = {
        vm-test = check "vm-test" "";
        scenario-switch = check "scenario-switch" "";
        scenario-boot = check "scenario-boot" "@BOOT@";
      };
      checks.x86_64-linux.fast = check "fast" "";
    };
}
"""


@pytest.mark.parametrize("boot_fails", [False, True])
def test_nightly_builds_every_vm_check_with_real_nix(tmp_path, real_nix, nix_build_env, boot_fails):
    """The vm-checks step, run with bash as the runner would, against a flake whose vmChecks
    are tiny derivations: every one is built, and nothing of `checks`; a failing one fails the
    step, with its log."""
    boot = "echo scenario-boot failed on purpose >&2; exit 1; " if boot_fails else ""
    flake = tmp_path / "flake"
    flake.mkdir()
    (flake / "flake.nix").write_text(VM_CHECKS_FLAKE.replace("@STAMP@", tmp_path.name).replace("@BOOT@", boot))
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    job = load("nightly")["jobs"]["vm-checks"]
    step = next(s for s in job["steps"] if "vmChecks" in s.get("run", ""))
    env = {**os.environ, **nix_build_env, "RUNNER_TEMP": str(runner_temp)}
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                          cwd=flake, env=env, capture_output=True, text=True, timeout=300)

    def built(attribute):  # `nix path-info` of an output that was never built fails
        return subprocess.run([real_nix, "path-info", f".#{attribute}"], cwd=flake, env=env,
                              capture_output=True, text=True, timeout=120).returncode == 0

    assert built("vmChecks.x86_64-linux.vm-test") and built("vmChecks.x86_64-linux.scenario-switch"), proc.stderr
    assert built("vmChecks.x86_64-linux.scenario-boot") is not boot_fails
    assert not built("checks.x86_64-linux.fast"), "nightly builds the VM suite, not `checks`"
    if boot_fails:
        assert proc.returncode != 0
        assert "scenario-boot failed on purpose" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
