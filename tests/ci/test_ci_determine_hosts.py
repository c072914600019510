"""ci/determine-hosts: the host list as a JSON matrix, from captured JSON or from real nix."""

import json

import pytest


def test_captured_nix_eval_json_from_a_file(run_ci, tmp_path):
    captured = tmp_path / "eval.json"
    captured.write_text('["Niko","Ingress","Development"]\n')  # as `nix eval --json` prints it
    proc = run_ci("determine-hosts", "--from-json", captured)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == '["Development","Ingress","Niko"]\n'


def test_captured_nix_eval_json_from_stdin(run_ci):
    proc = run_ci("determine-hosts", "--from-json", "-", input='["Testing","Production"]')
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == ["Production", "Testing"]


@pytest.mark.parametrize(
    "captured, message",
    [
        ('{"Niko": {}}', "expected a JSON list of host names, got dict"),
        ("[\"Niko\", 3]", "host name must be a string"),
        ('["Niko", "a;b"]', "'a;b' is not a valid host name"),
        ('["Niko", "Ni ko"]', "is not a valid host name"),
        ('["Niko", "-x"]', "is not a valid host name"),
        ('["Niko", "Niko"]', "duplicates"),
        ("error: something", "not valid JSON"),
    ],
)
def test_captured_output_that_is_not_a_clean_host_list_is_an_error(run_ci, captured, message):
    proc = run_ci("determine-hosts", "--from-json", "-", input=captured)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert proc.stdout == ""


def test_unreadable_capture_file_is_an_error(run_ci, tmp_path):
    proc = run_ci("determine-hosts", "--from-json", tmp_path / "missing.json")
    assert proc.returncode == 1
    assert "cannot read host list" in proc.stderr


def test_real_nix_eval_deployable_and_all_hosts(run_ci, real_nix, fleet_flake):
    deployable = run_ci("determine-hosts", "--flake", fleet_flake)
    assert deployable.returncode == 0, deployable.stderr
    assert json.loads(deployable.stdout) == ["Ingress", "Niko"]
    every = run_ci("determine-hosts", "--all", cwd=fleet_flake)
    assert every.returncode == 0, every.stderr
    assert json.loads(every.stdout) == ["Ingress", "Niko", "Template"]


def test_installables_format_names_each_toplevel(run_ci):
    proc = run_ci("determine-hosts", "--from-json", "-", "--format", "installables", input='["B","A"]')
    assert proc.stdout.splitlines() == [
        ".#nixosConfigurations.A.config.system.build.toplevel",
        ".#nixosConfigurations.B.config.system.build.toplevel",
    ]


def test_github_output_is_a_matrix_value(run_ci, tmp_path):
    out = tmp_path / "github-output"
    proc = run_ci("determine-hosts", "--from-json", "-", "--github-output", "hosts",
                  input='["Niko","Ingress"]', env={"GITHUB_OUTPUT": str(out)})
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == 'hosts=["Ingress","Niko"]\n'


def test_github_output_outside_a_workflow_is_an_error(run_ci):
    proc = run_ci("determine-hosts", "--from-json", "-", "--github-output", "hosts", input="[]")
    assert proc.returncode == 1
    assert "$GITHUB_OUTPUT is not set" in proc.stderr


def test_nix_failing_on_a_broken_flake_shows_nix_stderr(run_ci, real_nix, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "flake.nix").write_text("{ outputs = { self }: { deploy.nodes = { Niko = {}; ; }; }\n")
    proc = run_ci("determine-hosts", "--flake", broken)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "`nix eval --no-update-lock-file --json" in proc.stderr and "failed with exit status 1" in proc.stderr
    assert "syntax error" in proc.stderr  # nix's own words, passed through


def test_nix_failing_on_a_directory_without_a_flake(run_ci, real_nix, tmp_path):
    plain = tmp_path / "not-a-flake"
    plain.mkdir()
    proc = run_ci("determine-hosts", "--all", "--flake", plain)
    assert proc.returncode == 1
    assert "failed with exit status" in proc.stderr
    assert "flake.nix" in proc.stderr  # nix says it cannot find flake.nix


def test_nix_failing_when_the_attribute_is_missing(run_ci, real_nix, tmp_path):
    flake = tmp_path / "no-deploy"
    flake.mkdir()
    (flake / "flake.nix").write_text("{ outputs = { self }: { nixosConfigurations = {}; }; }\n")
    proc = run_ci("determine-hosts", "--flake", flake)
    assert proc.returncode == 1
    assert "deploy" in proc.stderr and "error:" in proc.stderr


def test_nix_missing_from_path_is_a_clear_error(run_ci, tmp_path):
    proc = run_ci("determine-hosts", env={"PATH": str(tmp_path)})
    assert proc.returncode == 1
    assert "the `nix` command was not found on PATH" in proc.stderr
