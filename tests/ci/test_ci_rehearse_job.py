"""pull-request.yml's `rehearse` job: on the untrusted KVM label, no secret, the base branch
through the environment, the report left as the job's summary and as an artifact, also when
the rehearsal failed. Its step scripts run here for real, with `nix` a recording stand-in."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
JOB = yaml.safe_load((REPO / ".forgejo" / "workflows" / "pull-request.yml").read_text())["jobs"]["rehearse"]


def step(name_part):
    [found] = [s for s in JOB["steps"] if name_part in s.get("name", "")]
    return found


def run_step(found, cwd, env):
    return subprocess.run(["bash", "-eo", "pipefail", "-c", found["run"]], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=60)


def test_it_runs_on_the_untrusted_kvm_runner_without_secrets():
    assert JOB["runs-on"] == "nixos-untrusted-kvm"
    text = json.dumps(JOB)
    assert "secrets" not in text and "vars." not in text and "DEPLOY_SSH_KEY" not in text
    assert JOB["steps"][0] == {"uses": "actions/checkout@v4", "with": {"fetch-depth": 0}}
    assert 0 < JOB["timeout-minutes"] <= 120


def test_the_base_branch_reaches_the_rehearsal_through_the_environment(tmp_path, fake_bin):
    fake_bin("nix", 'printf "%s\\n" "$@" > "$ARGS_FILE"\n')
    rehearse = step("Rehearse")
    assert rehearse["env"] == {"BASE_REF": "${{ github.base_ref }}"}
    hostile = 'main"; touch pwned; echo "'
    done = run_step(rehearse, tmp_path, {"PATH": fake_bin.env_path, "BASE_REF": hostile,
                                         "ARGS_FILE": str(tmp_path / "args")})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "args").read_text().splitlines() == [
        "run", "--no-update-lock-file", ".#rehearse", "--", "--base", f"origin/{hostile}",
        "--head", "HEAD", "--report-dir", "rehearsal"]
    assert not (tmp_path / "pwned").exists()


def test_the_rehearsal_s_exit_status_fails_the_step(tmp_path, fake_bin):
    fake_bin("nix", "exit 3\n")  # a host would break
    done = run_step(step("Rehearse"), tmp_path, {"PATH": fake_bin.env_path, "BASE_REF": "main"})
    assert done.returncode == 3


def test_the_report_becomes_the_job_summary_and_is_printed(tmp_path):
    summary_step = step("summary")
    assert summary_step["if"] == "always()"
    (tmp_path / "rehearsal").mkdir()
    (tmp_path / "rehearsal" / "rehearsal.md").write_text("## Deploy rehearsal\n| Niko | yes |\n")
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    done = run_step(summary_step, tmp_path, {"GITHUB_STEP_SUMMARY": str(summary)})
    assert done.returncode == 0
    assert summary.read_text() == "earlier step\n## Deploy rehearsal\n| Niko | yes |\n"
    assert "| Niko | yes |" in done.stdout


def test_without_a_report_the_summary_step_says_so_and_writes_nothing(tmp_path):
    summary = tmp_path / "summary.md"
    done = run_step(step("summary"), tmp_path, {"GITHUB_STEP_SUMMARY": str(summary)})
    assert done.returncode == 0 and "the rehearsal did not run" in done.stdout
    assert not summary.exists()
    unset = run_step(step("summary"), tmp_path, {"GITHUB_STEP_SUMMARY": ""})
    assert unset.returncode == 0


def test_the_report_is_uploaded_even_when_the_rehearsal_failed():
    upload = next(s for s in JOB["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["uses"] == "actions/upload-artifact@v3" and upload["if"] == "always()"
    assert upload["with"]["path"] == "rehearsal/"
    rehearse = step("Rehearse")
    assert "--report-dir rehearsal" in rehearse["run"]
