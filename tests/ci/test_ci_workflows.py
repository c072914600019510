"""The Forgejo workflows: offline schema validation and the rules read from the YAML."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".forgejo" / "workflows"
NAMES = ["build", "check", "deploy", "nightly", "pull-request"]
# Next to this Python (a virtualenv), else on PATH (the flake's dev shell).
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
if not CHECK_JSONSCHEMA.exists() and shutil.which("check-jsonschema"):
    CHECK_JSONSCHEMA = Path(shutil.which("check-jsonschema"))
PULL_REQUEST_EVENTS = {"pull_request", "pull_request_target"}
# Runner labels for code nobody trusted yet (pull requests): nothing of the fleet is there.
# The rehearsal's twins need KVM: a label of their own, as untrusted as the other.
UNTRUSTED_LABELS = {"nixos-untrusted", "nixos-untrusted-kvm"}
# The pull request's jobs that are not a push's checks and builds: the deploy rehearsal.
PULL_REQUEST_ONLY = {"rehearse"}


def load(name):
    return yaml.safe_load((WORKFLOWS / f"{name}.yml").read_text())


def triggers(workflow):
    # YAML 1.1 reads the bare key `on` as the boolean True.
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return {event: None for event in on}
    return on


def steps(workflow):
    for job_id, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, step


def validate(path):
    if not CHECK_JSONSCHEMA.exists():
        pytest.skip(f"check-jsonschema is not installed next to {sys.executable}")
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True, text=True, timeout=120,
    )


# --- schema ---------------------------------------------------------------------------

def test_exactly_these_workflows_exist():
    assert sorted(p.stem for p in WORKFLOWS.glob("*.y*ml")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_workflow_validates_against_the_github_workflow_schema(name):
    proc = validate(WORKFLOWS / f"{name}.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def dump(workflow, path):
    """Write a workflow back as YAML, restoring the `on` key that YAML 1.1 read as True."""
    workflow = {("on" if key is True else key): value for key, value in workflow.items()}
    path.write_text(yaml.safe_dump(workflow, sort_keys=False))
    return path


def test_the_schema_check_can_fail(tmp_path):
    control = validate(dump(load("deploy"), tmp_path / "control.yml"))
    assert control.returncode == 0, control.stdout  # the round trip itself is fine
    broken = load("deploy")
    del broken["jobs"]["deploy"]["runs-on"]
    proc = validate(dump(broken, tmp_path / "broken.yml"))
    assert proc.returncode != 0
    assert "'runs-on' is a required property" in proc.stdout


# --- deploy only from main and test-*, never from pull requests -------------------------

def test_deploy_triggers_are_push_to_main_and_test_branches_and_dispatch():
    on = triggers(load("deploy"))
    assert set(on) == {"push", "workflow_dispatch"}
    assert sorted(on["push"]["branches"]) == ["main", "test-*"]
    assert on["workflow_dispatch"]["inputs"]["boot"]["type"] == "boolean"
    assert on["workflow_dispatch"]["inputs"]["boot"]["default"] is False


def test_deploy_job_waits_for_the_build_and_skips_pull_requests():
    jobs = load("deploy")["jobs"]
    deploy = jobs["deploy"]
    assert {"plan", "build"} <= set(deploy["needs"])
    for event in PULL_REQUEST_EVENTS:
        assert f"github.event_name != '{event}'" in deploy["if"]
    assert "needs.plan.outputs.deploy == 'true'" in deploy["if"]
    assert "needs.plan.outputs.deploy == 'true'" in jobs["build"]["if"]


@pytest.mark.parametrize("name", [n for n in NAMES if n != "deploy"])
def test_no_other_workflow_deploys(name):
    text = (WORKFLOWS / f"{name}.yml").read_text()
    for _, step in steps(load(name)):
        command = step.get("run", "")
        assert "deploy-plan" not in command and "needs-reboot" not in command
        assert not re.search(r"(^|[\s;&|])deploy\s", command), command
    assert "DEPLOY_SSH_KEY" not in text


def test_pull_requests_get_the_checks_and_builds_of_a_push_from_their_own_workflow():
    # Renovate's auto-merge and main's branch protection wait for these.
    pull_request = load("pull-request")
    assert set(triggers(pull_request)) == {"pull_request"}
    assert {"flake-check", "eval", "determine-hosts", "build"} | PULL_REQUEST_ONLY == set(pull_request["jobs"])
    for name in ("build", "check"):
        on = triggers(load(name))
        assert "push" in on and not set(on) & PULL_REQUEST_EVENTS, f"{name}.yml: pull requests go to pull-request.yml"
    # The same commands as on a push, except build.yml's cache push (main only).
    def commands(name):
        return {step["run"] for job, step in steps(load(name)) if "run" in step
                and not (name == "pull-request" and job in PULL_REQUEST_ONLY)}
    pushed = commands("check") | {c for c in commands("build") if "nix copy" not in c}
    assert commands("pull-request") == pushed


def runs_on(job):
    labels = job["runs-on"]
    return {labels} if isinstance(labels, str) else set(labels)


def pull_request_workflows():
    return [name for name in NAMES if set(triggers(load(name))) & PULL_REQUEST_EVENTS]


def test_pull_request_jobs_run_on_their_own_labels_and_read_no_secret_or_variable():
    assert pull_request_workflows() == ["pull-request"]
    for name in pull_request_workflows():
        workflow = load(name)
        for job_id, job in workflow["jobs"].items():
            assert runs_on(job) <= UNTRUSTED_LABELS, f"{name}.yml job {job_id} runs on {job['runs-on']}"
        text = json.dumps(workflow, default=str)
        assert not re.search(r"\bsecrets\b", text), f"{name}.yml reads a secret"
        assert not re.search(r"\bvars\.", text), f"{name}.yml reads a repository variable"


def test_no_workflow_runs_pull_request_code_with_the_base_repository_s_rights():
    for name in NAMES:
        assert "pull_request_target" not in triggers(load(name)), name


def test_trusted_runners_never_see_pull_request_code_and_untrusted_ones_nothing_else():
    untrusted, trusted = set(), set()
    for name in NAMES:
        labels = set().union(*(runs_on(job) for job in load(name)["jobs"].values()))
        (untrusted if name in pull_request_workflows() else trusted).update(labels)
    assert untrusted <= UNTRUSTED_LABELS
    assert not trusted & UNTRUSTED_LABELS, "a secret-holding workflow on a pull-request runner"
    assert runs_on(load("deploy")["jobs"]["deploy"]).isdisjoint(untrusted)


def test_the_deploy_key_lives_in_the_agent_no_longer_than_the_deploy_job():
    job = load("deploy")["jobs"]["deploy"]
    [loader] = [s for s in job["steps"] if "DEPLOY_SSH_KEY" in json.dumps(s.get("env", {}))]
    added = re.findall(r"ssh-add(?:\s+-t\s+(\d+))?\s+-(?:\s|$)", loader["run"])
    assert added and all(added), "every ssh-add of the key needs a lifetime (-t seconds)"
    lifetime = int(added[0])
    assert 0 < lifetime <= job["timeout-minutes"] * 60, (lifetime, job["timeout-minutes"])
    stop = next(s for s in job["steps"] if "ssh-agent -k" in s.get("run", ""))
    assert stop["if"] == "always()"


# --- the secret ------------------------------------------------------------------------

def test_deploy_key_secret_appears_only_in_the_deploy_job():
    for name in NAMES:
        workflow = load(name)
        for job_id, job in workflow["jobs"].items():
            mentions = json.dumps(job).count("DEPLOY_SSH_KEY")
            if (name, job_id) == ("deploy", "deploy"):
                assert mentions >= 1
            else:
                assert mentions == 0, f"{name}.yml job {job_id} mentions DEPLOY_SSH_KEY"
        outside_jobs = {k: v for k, v in workflow.items() if k != "jobs"}
        assert "secrets." not in json.dumps(outside_jobs, default=str)
        assert "secrets: inherit" not in (WORKFLOWS / f"{name}.yml").read_text()


def expressions(value):
    """Every ${{ ... }} expression in a parsed workflow (comments are not part of it)."""
    return re.findall(r"\$\{\{(.*?)\}\}", json.dumps(value, default=str))


def secret_readers(workflows: dict) -> list:
    """(workflow, job, its `secrets` expressions) for every job that reads a secret: through a
    `secrets` expression (secrets.X, secrets['X'], toJSON(secrets)); a workflow that can be
    called, or a job that calls one, could be handed secrets and is refused outright."""
    readers = []
    for name, workflow in workflows.items():
        assert "workflow_call" not in triggers(workflow), f"{name}.yml could be called with secrets"
        for job_id, job in workflow["jobs"].items():
            assert "uses" not in job, f"{name}.yml job {job_id} calls a workflow (secrets could be passed)"
            uses = [e for e in expressions(job) if re.search(r"\bsecrets\b", e)]
            if uses:
                readers.append((name, job_id, sorted({u.strip() for u in uses})))
        outside_jobs = {k: v for k, v in workflow.items() if k != "jobs"}
        assert not [e for e in expressions(outside_jobs) if "secrets" in e]
    return readers


def test_only_the_deploy_job_can_read_the_deploy_key():
    """Only the deploy job of deploy.yml reads a secret, and it names exactly DEPLOY_SSH_KEY."""
    assert secret_readers({name: load(name) for name in NAMES}) == [("deploy", "deploy", ["secrets.DEPLOY_SSH_KEY"])]


def test_the_deploy_key_rule_can_fail():
    workflows = {name: load(name) for name in NAMES}
    workflows["build"]["jobs"]["build"]["env"] = {"K": "${{ toJSON(secrets) }}"}
    assert ("build", "build", ["toJSON(secrets)"]) in secret_readers(workflows)


AGE_KEY = re.compile(r"(?i)sops[_-]?age|age[_-]?key|AGE-SECRET-KEY-|sops/age|\.agekey")


@pytest.mark.parametrize("path", sorted([*WORKFLOWS.glob("*.yml"), *(REPO / "ci").iterdir()]), ids=lambda p: p.name)
def test_no_workflow_or_ci_script_references_an_age_key(path):
    """Hosts decrypt their own secrets (sops-nix); CI never holds an age key."""
    assert not AGE_KEY.search(path.read_text()), f"{path.name} references an age key"


def test_the_age_key_rule_can_fail():
    for text in ("SOPS_AGE_KEY: ${{ secrets.SOPS_AGE_KEY }}", "export SOPS_AGE_KEY_FILE=/x", "AGE-SECRET-KEY-1QQ"):
        assert AGE_KEY.search(text), text


def test_the_secret_is_only_in_the_env_of_the_step_that_loads_it():
    deploy = load("deploy")["jobs"]["deploy"]
    assert "secrets." not in json.dumps(deploy.get("env", {}))
    holders = [s for s in deploy["steps"] if "secrets." in json.dumps(s)]
    assert len(holders) == 1
    assert holders[0]["env"] == {"DEPLOY_SSH_KEY": "${{ secrets.DEPLOY_SSH_KEY }}"}
    assert "secrets." not in holders[0]["run"]  # read from the environment, not pasted in


# --- one lock for every job ------------------------------------------------------------

NIX_COMMAND = re.compile(r"(?:^|[\s;&|(])nix\s+(?!-)([a-z-]+(?:\s+(?!-)[a-z-]+)?)")
FLAKE_SUBCOMMANDS = ("build", "flake check", "flake metadata", "eval", "run", "shell", "develop", "copy")


@pytest.mark.parametrize("name", NAMES)
def test_every_job_first_refuses_an_unlocked_flake(name):
    for job_id, job in load(name)["jobs"].items():
        runs = [step for step in job["steps"] if "run" in step]
        assert runs and runs[0]["run"].strip() == "ci/require-lock", f"{name}.yml job {job_id}"
        # Nothing before it but the checkout.
        first = job["steps"].index(runs[0])
        assert [s.get("uses", "") for s in job["steps"][:first]] == ["actions/checkout@v4"], f"{name}.yml {job_id}"


@pytest.mark.parametrize("name", NAMES)
def test_every_nix_command_uses_the_committed_lock_as_it_is(name):
    seen = 0
    for job_id, step in steps(load(name)):
        text = " ".join(step.get("run", "").split())  # folded and literal blocks alike
        for match in NIX_COMMAND.finditer(text):
            if not match.group(1).startswith(FLAKE_SUBCOMMANDS):
                continue
            seen += 1
            rest = text[match.end():]
            assert rest.split()[0] == "--no-update-lock-file", f"{name}.yml {job_id}: nix {match.group(1)}{rest[:60]}"
    assert seen or name not in ("build", "check", "nightly")


def test_the_ci_scripts_pass_the_lock_flag_to_every_flake_command():
    cilib = (REPO / "ci" / "cilib.py").read_text()
    assert 'LOCK_FLAGS = ["--no-update-lock-file"]' in cilib
    calls = 0
    for script in ("determine-hosts", "deploy-plan", "needs-reboot", "cilib.py", "require-lock"):
        text = (REPO / "ci" / script).read_text()
        for line in text.splitlines():
            if re.search(r'\[(\s*"nix",)?\s*"(build|eval|flake)"', line):
                calls += 1
                assert "LOCK_FLAGS" in line, f"ci/{script}: {line.strip()}"
    assert calls >= 6  # the pattern finds the calls: check, two builds, two evals, metadata, ...


# --- concurrency ---------------------------------------------------------------------------

def test_one_deploy_at_a_time_and_never_cancelled():
    concurrency = load("deploy")["concurrency"]
    # A constant group: main and every test-* branch share it (they touch the same hosts).
    assert concurrency["group"] and "${{" not in concurrency["group"]
    assert concurrency["cancel-in-progress"] is False


# --- hygiene: nothing user-controlled is pasted into a shell ---------------------------

@pytest.mark.parametrize("name", NAMES)
def test_no_expression_is_interpolated_into_a_run_script(name):
    for job_id, step in steps(load(name)):
        assert "${{" not in step.get("run", ""), f"{name}.yml {job_id}: pass values via env"


def test_build_matrix_comes_from_determine_hosts():
    jobs = load("build")["jobs"]
    assert "ci/determine-hosts --all --github-output hosts" in jobs["determine-hosts"]["steps"][-1]["run"]
    assert jobs["build"]["strategy"]["matrix"]["host"] == "${{ fromJSON(needs.determine-hosts.outputs.hosts) }}"
    assert jobs["build"]["needs"] == "determine-hosts"


def flake_check_jobs():
    """(workflow, job) of every job that runs `nix flake check`, itself or through
    `deploy-plan --exec check`."""
    return [
        (name, job_id)
        for name in NAMES
        for job_id, step in steps(load(name))
        if "nix flake check" in step.get("run", "") or "--exec check" in step.get("run", "")
    ]


def test_the_fast_checks_need_no_kvm_runner():
    """`checks` holds no VM test (tests/nixos/test_nixos_scenario_checks.py refuses one), so
    every push's and every deploy's `nix flake check` runs on runners without KVM; only the
    nightly VM suite needs one."""
    jobs = flake_check_jobs()
    assert {name for name, _ in jobs} == {"build", "check", "deploy", "pull-request"}
    for name, job_id in jobs:
        assert not any("kvm" in label for label in runs_on(load(name)["jobs"][job_id])), f"{name}.yml job {job_id}"
    kvm_jobs = {(name, job_id) for name in NAMES for job_id, job in load(name)["jobs"].items()
                if any("kvm" in label for label in runs_on(job))}
    assert kvm_jobs == {("nightly", "scenarios"), ("nightly", "vm-checks"), ("pull-request", "rehearse")}
