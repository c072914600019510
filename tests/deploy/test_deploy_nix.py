"""harness.nix against the host's real nix (Debian nix-bin 2.8 here)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid
from pathlib import Path

import pytest
from deploy_testlib import StorePaths, require_nix

from harness import nix

# No cache.nixos.org lookups (unreachable here: each costs retries); one download attempt.
OFFLINE_OPTIONS = {"substituters": "", "download-attempts": "1"}

TRIVIAL = """
{ tag, feature ? null }:
derivation ({
  name = "harness-trivial";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "echo ${tag} > $out" ];
} // (if feature == null then {} else { requiredSystemFeatures = [ feature ]; }))
"""


@pytest.fixture(autouse=True)
def _nix_present() -> None:
    require_nix()


@pytest.fixture
def trivial_nix(scratch: Path) -> Path:
    path = scratch / "trivial.nix"
    path.write_text(TRIVIAL)
    return path


def _drv_of(out_path: str) -> str:
    return subprocess.run(
        ["nix-store", "--query", "--deriver", out_path], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_eval_json_of_a_builtins_expression() -> None:
    value = nix.eval_json(expr='{ a = 1; b = [ true null "x" ]; c = builtins.length [ 1 2 ]; }')
    assert value == {"a": 1, "b": [True, None, "x"], "c": 2}


def test_eval_json_with_apply() -> None:
    assert nix.eval_json(expr="{ a = 41; }", apply="x: x.a + 1") == 42


def test_env_reaches_nix_alone(monkeypatch) -> None:
    # How the twins pass NIX_SSHOPTS and the test host's name (an impure getEnv) to nix.
    monkeypatch.delenv("NDH_ONLY_FOR_NIX", raising=False)
    out = nix.run_nix(["eval", "--impure", "--raw", "--expr", 'builtins.getEnv "NDH_ONLY_FOR_NIX"'],
                      env={"NDH_ONLY_FOR_NIX": "given"})
    assert out == "given"
    assert "NDH_ONLY_FOR_NIX" not in os.environ, "this process's environment is left alone"
    assert nix.run_nix(["eval", "--impure", "--raw", "--expr", 'builtins.getEnv "NDH_ONLY_FOR_NIX"']) == ""


def test_eval_error_is_a_nix_error_with_position_and_advice() -> None:
    with pytest.raises(nix.NixError) as caught:
        nix.eval_json(expr="{ x = 1; }.y")
    error = caught.value
    assert error.kind is nix.EVALUATION
    assert error.exit_code == 1
    assert "attribute 'y' missing" in error.excerpt
    message = str(error)
    assert "nix failed (evaluation)" in message and "eval --json" in message
    assert "What to do:" in message and "--show-trace" in message


def test_partial_json_of_a_failed_eval_is_not_returned() -> None:
    # nix 2.8 prints '{"a":' on stdout before failing: the wrapper must raise, not parse.
    with pytest.raises(nix.NixError) as caught:
        nix.eval_json(expr='{ a = builtins.abort "on purpose"; }')
    assert "evaluation aborted" in caught.value.excerpt
    assert caught.value.kind is nix.EVALUATION


def test_syntax_error_is_an_evaluation_failure() -> None:
    with pytest.raises(nix.NixError) as caught:
        nix.eval_json(expr="1 +")
    assert caught.value.kind is nix.EVALUATION
    assert "syntax error" in caught.value.excerpt


def test_missing_nixpkgs_says_so() -> None:
    with pytest.raises(nix.NixError) as caught:
        nix.eval_json(
            expr="(import <nixpkgs> {}).hello.name", impure=True, options={"nix-path": ""}
        )
    assert caught.value.kind is nix.MISSING_SEARCH_PATH


def test_build_of_a_trivial_derivation_returns_its_output(
    trivial_nix: Path, store_paths: StorePaths
) -> None:
    tag = f"harness-{uuid.uuid4().hex}"
    outputs = nix.build(file=str(trivial_nix), argstrs={"tag": tag}, options=OFFLINE_OPTIONS)
    assert len(outputs) == 1
    out = outputs[0]
    store_paths.add(_drv_of(out), out)
    assert out.startswith("/nix/store/") and out.endswith("-harness-trivial")
    assert Path(out).read_text() == tag + "\n"


def test_build_uses_json_when_print_out_paths_is_missing(trivial_nix: Path) -> None:
    # Host nix 2.8 lacks --print-out-paths (added in 2.9): the wrapper must notice, not fail.
    executable = nix.find_nix()
    version = subprocess.run([executable, "--version"], capture_output=True, text=True).stdout
    supported = nix._supports_print_out_paths(executable)
    help_text = subprocess.run(
        [executable, "--extra-experimental-features", "nix-command", "build", "--help"],
        capture_output=True,
        text=True,
    ).stdout
    assert supported == ("--print-out-paths" in help_text), version


def test_missing_kvm_feature_is_explained(trivial_nix: Path, store_paths: StorePaths) -> None:
    # This host's nix.conf offers kvm; a machine without it is one whose system-features lack it.
    tag = f"harness-{uuid.uuid4().hex}"
    with pytest.raises(nix.NixError) as caught:
        nix.build(
            file=str(trivial_nix),
            argstrs={"tag": tag, "feature": "kvm"},
            options={**OFFLINE_OPTIONS, "system-features": "benchmark"},
        )
    error = caught.value
    drv = nix.eval_json("drvPath", file=str(trivial_nix), argstrs={"tag": tag, "feature": "kvm"})
    store_paths.add(drv)
    store_paths.add_lock_of(
        nix.eval_json("outPath", file=str(trivial_nix), argstrs={"tag": tag, "feature": "kvm"})
    )
    assert error.kind is nix.MISSING_FEATURE
    # Nix 2.8's exact wording, checked on this host.
    assert "with features {kvm} is required to build" in error.excerpt
    assert "but I am a" in error.excerpt
    assert "kvm" in str(error) and "system-features" in str(error)


def test_newer_nix_missing_feature_wording_is_recognised() -> None:
    stderr = (
        "error: Cannot build '/nix/store/x-vm-test.drv'.\n"
        "       Reason: required system or feature not available\n"
        "       Required system: 'x86_64-linux' with features {kvm, nixos-test}\n"
    )
    assert nix.classify_failure(stderr) is nix.MISSING_FEATURE


def test_unreachable_download_is_offline() -> None:
    # Only 127.0.0.1: port 1 refuses the connection, which is what an offline machine sees.
    with pytest.raises(nix.NixError) as caught:
        nix.eval_json(
            expr='builtins.fetchurl { url = "http://127.0.0.1:1/source.tar"; '
            'sha256 = "0000000000000000000000000000000000000000000000000000"; }',
            options=OFFLINE_OPTIONS,
        )
    assert caught.value.kind is nix.OFFLINE
    assert "unable to download 'http://127.0.0.1:1/source.tar'" in caught.value.excerpt


def test_excerpt_skips_retry_warnings() -> None:
    stderr = (
        "warning: error: unable to download 'https://cache.nixos.org/nix-cache-info': "
        "Couldn't resolve host name (6); retrying in 288 ms\n"
        "building '/nix/store/abc-x.drv'...\n"
        "error: builder for '/nix/store/abc-x.drv' failed with exit code 1;\n"
        "       last 1 log lines:\n"
    )
    excerpt = nix.stderr_excerpt(stderr)
    assert excerpt.startswith("error: builder for")
    # The download warning is real text in stderr, so offline wins over the build failure.
    assert nix.classify_failure(stderr) is nix.OFFLINE
    assert nix.classify_failure(stderr.splitlines()[2]) is nix.BUILD


def test_timeout_is_reported_as_timeout() -> None:
    # A download that hangs: a 127.0.0.1 socket that accepts connections and never answers.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        with pytest.raises(nix.NixError) as caught:
            nix.eval_json(
                expr=f'builtins.fetchurl {{ url = "http://127.0.0.1:{port}/hangs"; '
                'sha256 = "0000000000000000000000000000000000000000000000000000"; }',
                options=OFFLINE_OPTIONS,
                timeout=1.0,
            )
    assert caught.value.kind is nix.TIMEOUT
    assert caught.value.exit_code is None
    assert "timed out" in str(caught.value)


def test_no_nix_on_path(monkeypatch: pytest.MonkeyPatch, scratch: Path) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.chdir(scratch)  # an empty PATH entry means the cwd: keep it free of `nix`
    with pytest.raises(nix.NixUnavailable, match="nix is not installed or not on PATH"):
        nix.find_nix()
    with pytest.raises(nix.NixUnavailable):
        nix.eval_json(expr="1")
    with pytest.raises(nix.NixUnavailable):
        nix.build(expr="1")


def test_file_and_expr_together_is_a_usage_error() -> None:
    with pytest.raises(ValueError):
        nix.eval_json(file="/dev/null", expr="1")


def test_eval_json_result_is_real_json_roundtrip() -> None:
    value = nix.eval_json(expr='builtins.fromJSON (builtins.toJSON { s = "é"; n = -3; })')
    assert json.dumps(value, sort_keys=True) == json.dumps({"n": -3, "s": "é"}, sort_keys=True)
    assert os.environ.get("PATH")  # monkeypatching in the test above did not leak


def test_path_without_substituter_is_offline(scratch: Path) -> None:
    # `nix build` of a store path nobody can provide: what a machine without its cache sees.
    with pytest.raises(nix.NixError) as caught:
        nix.build(["/nix/store/00000000000000000000000000000000-absent"], options=OFFLINE_OPTIONS)
    assert caught.value.kind is nix.OFFLINE, caught.value.stderr


@pytest.fixture
def failing_build(scratch: Path, store_paths: StorePaths):
    """A derivation whose builder prints its tag and exits 3: (file, argstrs, drv path)."""
    failing = scratch / "failing.nix"
    failing.write_text(
        '{ tag }: derivation { name = "harness-failing"; system = builtins.currentSystem; '
        'builder = "/bin/sh"; args = [ "-c" "echo ${tag}; exit 3" ]; }'
    )
    tag = {"tag": uuid.uuid4().hex}
    drv = nix.eval_json("drvPath", file=str(failing), argstrs=tag)
    store_paths.add(drv)
    store_paths.add_lock_of(nix.eval_json("outPath", file=str(failing), argstrs=tag))
    return failing, tag, drv


def test_failing_builder_is_a_build_failure(failing_build) -> None:
    failing, tag, drv = failing_build
    with pytest.raises(nix.NixError) as caught:
        nix.build(file=str(failing), argstrs=tag, options=OFFLINE_OPTIONS)
    assert caught.value.kind is nix.BUILD
    assert f"builder for '{drv}' failed with exit code 3" in caught.value.excerpt


def test_build_streams_nix_s_progress_as_it_comes(trivial_nix: Path, store_paths: StorePaths) -> None:
    tag = {"tag": uuid.uuid4().hex}
    drv = nix.eval_json("drvPath", file=str(trivial_nix), argstrs=tag)
    store_paths.add(drv)
    lines: list[str] = []
    outputs = nix.build(file=str(trivial_nix), argstrs=tag, options=OFFLINE_OPTIONS, progress=lines.append)
    store_paths.add(outputs[0])
    assert Path(outputs[0]).read_text().strip() == tag["tag"]
    assert any(f"building '{drv}'" in line for line in lines), lines


def test_a_streamed_build_failure_is_still_classified(failing_build) -> None:
    failing, tag, drv = failing_build
    lines: list[str] = []
    with pytest.raises(nix.NixError) as caught:
        nix.build(file=str(failing), argstrs=tag, options=OFFLINE_OPTIONS, progress=lines.append)
    assert caught.value.kind is nix.BUILD
    assert any(f"builder for '{drv}' failed" in line for line in lines), lines


@pytest.mark.parametrize("printed, expected, old", [
    ("nix (Nix) 2.8.0", (2, 8, 0), True),
    ("nix (Nix) 2.18.1", (2, 18, 1), False),
    ("nix (Nix) 2.24.10", (2, 24, 10), False),
    ("nix (Lix, like Nix) 2.91.1", (2, 91, 1), False),
    ("nix (Determinate Nix 3.6.2) 2.29.0", (2, 29, 0), False),
])
def test_the_version_is_the_last_dotted_number_nix_prints(scratch: Path, printed, expected, old) -> None:
    stand_in = scratch / "nix"
    stand_in.write_text(f"#!/bin/sh\necho '{printed}'\n")
    stand_in.chmod(0o755)
    assert nix.version(str(stand_in))[0] == expected
    reason = nix.too_old(str(stand_in))
    assert (reason is not None) == old
    if old:
        assert reason.startswith(f"nix {'.'.join(map(str, expected))} ({stand_in}) is older than 2.18")


def test_this_host_s_nix_version_is_read() -> None:
    found, printed = nix.version(nix.find_nix())
    assert found >= (2, 0) and printed in subprocess.run(["nix", "--version"], capture_output=True, text=True).stdout
