"""ci/deploy-plan: branch + event + boot flags + host list -> the exact deploy command."""

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

HOSTS = '["Ingress","Niko"]'

ODD_BRANCHES = [
    "test-Niko;reboot",
    "test-Niko && true",
    "test-Ni ko",
    "test-'Niko'",
    'test-"Niko"',
    "test-$(id)",
    "test-`id`",
    "test-../Niko",
    "test-Niko/..",
    "test-Niko/x",
    "test--Niko",
    "test-.Niko",
    "test-Niko.test",
    "test-Niko\n",
    "test-Niko|cat",
    "test-Niko*",
    "test-",
]


def plan(run_ci, *args, hosts=HOSTS, **kwargs):
    extra = ["--hosts-json", hosts] if hosts is not None else []
    return run_ci("deploy-plan", *args, *extra, **kwargs)


def plan_json(run_ci, *args, **kwargs):
    proc = plan(run_ci, *args, **kwargs)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_main_deploys_every_deployable_host_with_switch(run_ci):
    result = plan_json(run_ci, "--branch", "main", "--event", "push")
    assert result["deploy"] is True
    assert result["mode"] == "switch"
    assert result["argv"] == ["deploy", "--skip-checks", "."]
    assert result["env"] == {}
    assert result["hosts"] == ["Ingress", "Niko"]
    assert result["command"] == "deploy --skip-checks ."
    assert result["check"] == ["nix", "flake", "check", "--no-update-lock-file", "--print-build-logs", "."]
    assert result["build"] == [
        "nix", "build", "--no-update-lock-file", "--no-link", "--print-build-logs",
        ".#deploy.nodes.Ingress.profiles.system.path",
        ".#deploy.nodes.Niko.profiles.system.path",
    ]


@pytest.mark.parametrize("flag", ["--boot", "--reboot-needed"])
def test_main_with_boot_request_or_needed_reboot_uses_boot(run_ci, flag):
    result = plan_json(run_ci, "--branch", "main", flag, "true")
    assert result["mode"] == "boot"
    assert result["argv"] == ["deploy", "--skip-checks", "--boot", "."]
    assert "reboot to activate" in result["reason"]


@pytest.mark.parametrize("value", ["", "false", "False"])
def test_boot_inputs_that_mean_no(run_ci, value):
    # A push event has no workflow_dispatch input: the workflow passes ''.
    result = plan_json(run_ci, "--branch", "main", "--boot", value, "--reboot-needed", value)
    assert result["argv"] == ["deploy", "--skip-checks", "."]


def test_boot_input_that_is_not_a_boolean_is_refused(run_ci):
    proc = plan(run_ci, "--branch", "main", "--boot", "yes please")
    assert proc.returncode == 1
    assert "--boot must be 'true', 'false' or empty" in proc.stderr


def test_dispatch_on_main_is_a_deploy(run_ci):
    result = plan_json(run_ci, "--branch", "main", "--event", "workflow_dispatch", "--boot", "true")
    assert result["argv"] == ["deploy", "--skip-checks", "--boot", "."]


def test_test_branch_deploys_only_that_host_with_the_test_profile(run_ci):
    result = plan_json(run_ci, "--branch", "test-Niko")
    assert result["deploy"] is True
    assert result["mode"] == "test"
    assert result["hosts"] == ["Niko"]
    assert result["env"] == {"HOMELAB_DEPLOY_TEST_HOST": "Niko"}
    assert result["argv"] == ["deploy", "--skip-checks", ".#Niko.test", "--", "--impure"]
    # The pure check (an impure one would trip the flake's main-profiles guard) ...
    assert result["check"] == ["nix", "flake", "check", "--no-update-lock-file", "--print-build-logs", "."]
    # ... and the build of exactly the profile deployed, which only exists impurely.
    assert result["build"] == ["nix", "build", "--no-update-lock-file", "--no-link", "--print-build-logs",
                               ".#deploy.nodes.Niko.profiles.test.path", "--impure"]
    assert result["command"] == "HOMELAB_DEPLOY_TEST_HOST=Niko deploy --skip-checks '.#Niko.test' -- --impure"


def test_shell_format_prints_the_human_command_that_splits_back_to_the_argv(run_ci):
    proc = plan(run_ci, "--branch", "test-Ingress", "--format", "shell")
    assert proc.returncode == 0, proc.stderr
    words = shlex.split(proc.stdout)
    assert words == ["HOMELAB_DEPLOY_TEST_HOST=Ingress", "deploy", "--skip-checks",
                     ".#Ingress.test", "--", "--impure"]


@pytest.mark.parametrize(
    "branch, hint",
    [
        ("test-Unknown", "is not a deployable host"),
        ("test-niko", "case-sensitive: did you mean test-Niko?"),
        ("test-NIKO", "case-sensitive"),
        ("test-Template", "is not a deployable host"),  # a host, but never deployable
    ],
)
def test_unknown_host_fails_and_names_the_deployable_hosts(run_ci, branch, hint):
    proc = plan(run_ci, "--branch", branch)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert hint in proc.stderr
    assert "deployable hosts: Ingress, Niko" in proc.stderr
    assert "nothing deployed" in proc.stderr


@pytest.mark.parametrize("branch", ODD_BRANCHES)
def test_host_with_odd_characters_is_refused_before_any_command(run_ci, fake_bin, tmp_path, branch):
    marker = tmp_path / "deploy-was-run"
    fake_bin("deploy", f'touch "{marker}"\n')
    # Even a host list that contains the odd name must not make it acceptable.
    hosts = json.dumps(["Niko", branch[len("test-"):]])
    proc = plan(run_ci, "--branch", branch, "--exec", "deploy", hosts=hosts,
                env={"PATH": fake_bin.env_path})
    assert proc.returncode == 1
    assert "nothing deployed" in proc.stderr or "not a valid host name" in proc.stderr
    assert not marker.exists()
    assert proc.stdout == ""


@pytest.mark.parametrize("branch", ["feature/x", "main2", "testing-Niko", "Test-Niko", "renovate/nixpkgs-1.x", "develop"])
def test_other_branches_deploy_nothing(run_ci, branch):
    proc = plan(run_ci, "--branch", branch)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["deploy"] is False
    assert result["mode"] == "none"
    assert result["argv"] == []
    assert "nothing to deploy" in proc.stderr


def test_other_branch_with_exec_runs_nothing(run_ci, fake_bin, tmp_path):
    marker = tmp_path / "deploy-was-run"
    fake_bin("deploy", f'touch "{marker}"\n')
    proc = plan(run_ci, "--branch", "feature", "--exec", "deploy", env={"PATH": fake_bin.env_path})
    assert proc.returncode == 0
    assert "nothing to deploy" in proc.stderr
    assert not marker.exists()


@pytest.mark.parametrize("event", ["pull_request", "pull_request_target"])
@pytest.mark.parametrize("branch", ["main", "test-Niko", "feature"])
def test_pull_requests_never_deploy(run_ci, event, branch):
    proc = plan(run_ci, "--branch", branch, "--event", event)
    assert proc.returncode == 1
    assert "pull requests never deploy" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("flag", ["--boot", "--reboot-needed"])
def test_boot_is_refused_on_a_test_branch(run_ci, flag):
    proc = plan(run_ci, "--branch", "test-Niko", flag, "true")
    assert proc.returncode == 1
    assert "test profile never touches the boot loader" in proc.stderr


def test_a_full_ref_is_refused_as_branch(run_ci):
    proc = plan(run_ci, "--branch", "refs/heads/main")
    assert proc.returncode == 1
    assert "GITHUB_REF_NAME" in proc.stderr


def test_exec_deploy_runs_exactly_the_planned_argv_and_environment(run_ci, fake_bin, tmp_path):
    record = tmp_path / "deploy-call.json"
    fake_bin(
        "deploy",
        f"""\
        python3 -c 'import json, os, sys; json.dump({{"argv": sys.argv[1:],
            "test_host": os.environ.get("HOMELAB_DEPLOY_TEST_HOST")}}, open("{record}", "w"))' "$@"
        exit 7
        """,
    )
    env = {"PATH": fake_bin.env_path}
    proc = plan(run_ci, "--branch", "test-Niko", "--exec", "deploy", env=env)
    assert proc.returncode == 7  # the deploy's own exit status is the step's status
    assert json.loads(record.read_text()) == {
        "argv": ["--skip-checks", ".#Niko.test", "--", "--impure"],
        "test_host": "Niko",
    }
    proc = plan(run_ci, "--branch", "main", "--reboot-needed", "true", "--exec", "deploy", env=env)
    assert proc.returncode == 7
    assert json.loads(record.read_text()) == {"argv": ["--skip-checks", "--boot", "."], "test_host": None}


def test_github_output_carries_the_decision(run_ci, tmp_path):
    out = tmp_path / "github-output"
    proc = plan(run_ci, "--branch", "test-Niko", "--github-output", env={"GITHUB_OUTPUT": str(out)})
    assert proc.returncode == 0, proc.stderr
    lines = out.read_text().splitlines()
    assert "deploy=true" in lines
    assert "mode=test" in lines
    assert 'hosts=["Niko"]' in lines
    proc = plan(run_ci, "--branch", "feature", "--github-output", env={"GITHUB_OUTPUT": str(out)})
    assert out.read_text().splitlines()[-4:][0] == "deploy=false"


def test_host_list_from_file_and_stdin(run_ci, tmp_path):
    hosts_file = tmp_path / "hosts.json"
    hosts_file.write_text('["Niko"]')
    assert plan_json(run_ci, "--branch", "test-Niko", "--hosts-file", hosts_file, hosts=None)["hosts"] == ["Niko"]
    proc = plan(run_ci, "--branch", "main", "--hosts-file", "-", hosts=None, input='["B","A"]')
    assert json.loads(proc.stdout)["hosts"] == ["A", "B"]


def test_host_list_from_the_flake_with_real_nix(run_ci, real_nix, fleet_flake):
    result = plan_json(run_ci, "--branch", "main", hosts=None, cwd=fleet_flake)
    assert result["hosts"] == ["Ingress", "Niko"]  # Template has no deploy node
    proc = plan(run_ci, "--branch", "test-Template", hosts=None, cwd=fleet_flake)
    assert proc.returncode == 1
    assert "'Template' is not a deployable host" in proc.stderr


def test_nix_failing_for_the_host_list_refuses_the_deploy(run_ci, real_nix, tmp_path, fake_bin):
    marker = tmp_path / "deploy-was-run"
    fake_bin("deploy", f'touch "{marker}"\n')
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "flake.nix").write_text("{ outputs = { self }: { deploy.nodes = ; }; }\n")
    proc = plan(run_ci, "--branch", "main", "--exec", "deploy", hosts=None, cwd=tmp_path / "broken",
                env={"PATH": fake_bin.env_path})
    assert proc.returncode == 1
    assert "failed with exit status" in proc.stderr
    assert not marker.exists()


def test_exec_check_never_passes_the_test_host_variable(run_ci, fake_bin, tmp_path):
    record = tmp_path / "nix-calls"
    fake_bin("nix", f'printf "%s|%s\\n" "${{HOMELAB_DEPLOY_TEST_HOST-unset}}" "$*" >> "{record}"\n')
    env = {"PATH": fake_bin.env_path, "HOMELAB_DEPLOY_TEST_HOST": "Leaked"}
    assert plan(run_ci, "--branch", "test-Niko", "--exec", "check", env=env).returncode == 0
    assert plan(run_ci, "--branch", "test-Niko", "--exec", "build", env=env).returncode == 0
    assert record.read_text().splitlines() == [
        "unset|flake check --no-update-lock-file --print-build-logs .",
        "Niko|build --no-update-lock-file --no-link --print-build-logs .#deploy.nodes.Niko.profiles.test.path --impure",
    ]


@pytest.fixture
def own_store(nix_build_env, tmp_path):
    """nix_build_env with a Nix store of the test's own, so what the plan builds and signs never
    reaches the host's store database (a signature added there stays for good). A store directory
    of its own rather than a chroot store (local?root=): nix builds for a chroot store only in a
    sandbox, which is off here. Builders run as the calling user (no build-users-group): root's
    build users cannot enter pytest's private tmp_path. Returns (env, store directory)."""
    root = tmp_path / "nix"
    url = f"local?store={root}/store&state={root}/state&log={root}/log"
    return {"NIX_CONFIG": f"{nix_build_env['NIX_CONFIG']}store = {url}\nbuild-users-group =\n"}, root / "store"


@pytest.mark.parametrize("branch", ["main", "test-Niko"])
def test_exec_build_builds_the_deployed_profile_with_real_nix(run_ci, contract_flake, own_store, branch):
    env, _ = own_store
    proc = plan(run_ci, "--branch", branch, "--exec", "build", cwd=contract_flake, env=env, hosts='["Niko"]')
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(("branch", "installables", "extra"), [
    ("main", [".#deploy.nodes.Ingress.profiles.system.path", ".#deploy.nodes.Niko.profiles.system.path"], []),
    ("test-Niko", [".#deploy.nodes.Niko.profiles.test.path"], ["--impure"]),
])
def test_sign_signs_the_closures_of_exactly_the_deployed_profiles(run_ci, branch, installables, extra):
    result = plan_json(run_ci, "--branch", branch, "--signing-key-file", "/var/lib/ci/key.sec")
    assert result["sign"] == ["nix", "store", "sign", "--recursive", "--key-file", "/var/lib/ci/key.sec",
                              *installables, *extra]
    assert plan_json(run_ci, "--branch", branch)["sign"] == [], "no key file, no signing"


def test_exec_sign_without_a_key_file_signs_nothing_and_says_so(run_ci, fake_bin, tmp_path):
    marker = tmp_path / "nix-was-run"
    fake_bin("nix", f'touch "{marker}"\n')
    proc = plan(run_ci, "--branch", "main", "--exec", "sign", env={"PATH": fake_bin.env_path})
    assert proc.returncode == 0
    assert "nothing signed" in proc.stderr
    assert not marker.exists()


@pytest.mark.parametrize("branch", ["main", "test-Niko"])
def test_exec_sign_signs_the_deployed_closure_with_real_nix(run_ci, contract_flake, own_store, tmp_path, branch):
    env, store_dir = own_store
    key, public = tmp_path / "ci.sec", tmp_path / "ci.pub"
    subprocess.run(["nix-store", "--generate-binary-cache-key", f"ci-{tmp_path.name}-1", key, public], check=True)
    args = ("--branch", branch, "--signing-key-file", key)
    assert plan(run_ci, *args, "--exec", "build", cwd=contract_flake, env=env, hosts='["Niko"]').returncode == 0
    proc = plan(run_ci, *args, "--exec", "sign", cwd=contract_flake, env=env, hosts='["Niko"]')
    assert proc.returncode == 0, proc.stderr
    profile = ".#deploy.nodes.Niko.profiles." + ("system" if branch == "main" else "test") + ".path"
    info = subprocess.run(["nix", "path-info", "--json", "--sigs", "--impure", profile], cwd=contract_flake,
                          env={**os.environ, **env, "HOMELAB_DEPLOY_TEST_HOST": "Niko" if branch != "main" else ""},
                          capture_output=True, text=True, check=True)
    entries = json.loads(info.stdout)
    # Built and signed in the test's own store: the host's store never saw the path.
    assert [Path(entry["path"]).parent for entry in entries] == [store_dir], info.stdout
    sigs = [sig for entry in entries for sig in entry.get("signatures", [])]
    assert any(sig.startswith(f"ci-{tmp_path.name}-1:") for sig in sigs), info.stdout
