"""deploy.yml's own run: scripts, executed with bash as the runner would (the rules read from
the YAML are in test_ci_workflows.py)."""

import json
import os
import subprocess

import pytest
from test_ci_workflows import REPO, load


# --- the deploy workflow's own commands, run for real -------------------------------------
# Each run: script of deploy.yml is executed with bash as the runner would, in a copy
# of a fleet-shaped flake (real nix eval), with ${{ }} values given as env; `deploy`
# is a recording stand-in on PATH.

EXPRESSIONS = {"${{ inputs.boot }}": "BOOT", "${{ steps.reboot.outputs.needs-reboot }}": "REBOOT"}


def run_step(job, step_id_or_name, workdir, env, values):
    step = next(s for s in job["steps"] if step_id_or_name in (s.get("id"), s.get("name")))
    step_env = {}
    for source in (job.get("env", {}), step.get("env", {})):
        for key, value in source.items():
            assert value in EXPRESSIONS, f"unknown expression {value!r} in the test's table"
            step_env[key] = values.get(EXPRESSIONS[value], "")
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                          cwd=workdir, env={**env, **step_env}, capture_output=True, text=True, timeout=120)


@pytest.fixture
def deploy_checkout(tmp_path, contract_flake, fake_bin, real_nix):
    """A checkout-like directory: a fleet-shaped flake plus this repository's ci/."""
    os.symlink(REPO / "ci", contract_flake / "ci")
    record = tmp_path / "deploy-calls"
    fake_bin("deploy", f'printf "%s|%s\\n" "${{HOMELAB_DEPLOY_TEST_HOST:-}}" "$*" >> "{record}"\n')
    # `nix shell --inputs-from . deploy-rs --command ...` needs the real deploy-rs input
    # (network): the stand-in checks that form and runs the command with `deploy`
    # above on PATH; every other nix call goes to the real nix.
    fake_bin("nix", f"""\
        if [ "$1" = shell ]; then
          [ "$2 $3 $4 $5 $6" = "--no-update-lock-file --inputs-from . deploy-rs --command" ] || {{ echo "unexpected: $*" >&2; exit 99; }}
          shift 6
          exec "$@"
        fi
        exec {real_nix} "$@"
        """)
    # The committed lock every job requires (ci/require-lock): the lock of an input-less flake
    # (this nix's `nix flake lock` writes none for such a flake; nix reads this one as complete).
    (contract_flake / "flake.lock").write_text(json.dumps({"nodes": {"root": {}}, "root": "root", "version": 7}))
    output = tmp_path / "github-output"
    output.touch()
    env = {**os.environ, "PATH": fake_bin.env_path, "GITHUB_OUTPUT": str(output)}
    return contract_flake, env, record, output


@pytest.mark.parametrize(
    "branch, event, values, expected",
    [
        ("main", "push", {}, "|--skip-checks ."),
        ("main", "push", {"REBOOT": "true"}, "|--skip-checks --boot ."),
        ("main", "workflow_dispatch", {"BOOT": "true", "REBOOT": ""}, "|--skip-checks --boot ."),
        ("test-Niko", "push", {}, "Niko|--skip-checks .#Niko.test -- --impure"),
    ],
)
def test_deploy_workflow_steps_plan_and_run_the_right_command(deploy_checkout, branch, event, values, expected):
    workdir, env, record, output = deploy_checkout
    env = {**env, "GITHUB_REF_NAME": branch, "GITHUB_EVENT_NAME": event}
    jobs = load("deploy")["jobs"]
    plan = run_step(jobs["plan"], "plan", workdir, env, values)
    assert plan.returncode == 0, plan.stderr
    assert "deploy=true" in output.read_text().splitlines()
    deployed = run_step(jobs["deploy"], "Deploy", workdir, env, values)
    assert deployed.returncode == 0, deployed.stderr
    assert record.read_text().splitlines() == [expected]


@pytest.mark.parametrize("branch", ["test-Unknown", "test-Template", "test-Niko;id"])
def test_deploy_workflow_fails_for_an_unknown_test_host_and_deploys_nothing(deploy_checkout, branch):
    workdir, env, record, output = deploy_checkout
    env = {**env, "GITHUB_REF_NAME": branch, "GITHUB_EVENT_NAME": "push"}
    jobs = load("deploy")["jobs"]
    plan = run_step(jobs["plan"], "plan", workdir, env, {})
    assert plan.returncode == 1
    assert "nothing deployed" in plan.stderr
    assert output.read_text() == ""  # no deploy=true for the later jobs to act on
    deployed = run_step(jobs["deploy"], "Deploy", workdir, env, {})
    assert deployed.returncode == 1
    assert not record.exists()


def test_deploy_workflow_dispatched_on_another_branch_plans_nothing(deploy_checkout):
    workdir, env, record, output = deploy_checkout
    env = {**env, "GITHUB_REF_NAME": "feature", "GITHUB_EVENT_NAME": "workflow_dispatch"}
    plan = run_step(load("deploy")["jobs"]["plan"], "plan", workdir, env, {"BOOT": "false"})
    assert plan.returncode == 0, plan.stderr
    assert "deploy=false" in output.read_text().splitlines()


@pytest.mark.parametrize("branch", ["main", "test-Niko"])
def test_deploy_workflow_build_job_checks_and_builds_with_real_nix(deploy_checkout, nix_build_env, branch):
    workdir, env, record, output = deploy_checkout
    env = {**env, **nix_build_env, "GITHUB_REF_NAME": branch, "GITHUB_EVENT_NAME": "push"}
    build = load("deploy")["jobs"]["build"]
    for step in build["steps"]:
        if "run" not in step:
            continue  # actions/checkout
        proc = run_step(build, step["name"], workdir, env, {})
        assert proc.returncode == 0, f"{step['name']}: {proc.stderr}"
    assert not record.exists()  # the build job never deploys
