"""ci/bootstrap on this machine, for real: as a user who is not root (uid 65534 through setpriv,
with a Debian user's PATH, which has no sbin) and as root on a rerun. Nothing is installed:
as a user only `--check` runs, or runs that stop at the missing packages; as root a copy of
the script runs beside a stand-in .venv, with a stand-in apt-get that records being called.
Every run is in a network namespace of its own (`unshare -n`): no download can happen."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BOOTSTRAP = REPO / "ci" / "bootstrap"
USER = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
USER_PATH = "/usr/local/bin:/usr/bin:/bin"  # Debian's default for users: no sbin
RUNS = 5  # `apt-cache … | grep -q` under pipefail failed 4 runs of 5


def _require_root_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("runs ci/bootstrap as another user and as root: needs root (CI runs it as root)")
    for tool in ("setpriv", "unshare"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (util-linux)")
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot make a network namespace (unshare -n)")


def bootstrap(*args: str, as_user: bool = True, path: str = USER_PATH, script: Path = BOOTSTRAP,
              home: str = "/nonexistent") -> subprocess.CompletedProcess:
    argv = ["unshare", "-n", *(USER if as_user else []), "env", "-i", f"PATH={path}", f"HOME={home}",
            "LANG=C.UTF-8", str(script), *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd="/")
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def ready_machine() -> None:
    """This machine has every system package (else these tests would be about what it lacks)."""
    _require_root_tools()
    check = bootstrap("--check", as_user=False, path=f"{USER_PATH}:/usr/sbin:/sbin")
    if "missing system packages" in check.stderr:
        pytest.skip(f"this machine is not bootstrapped: {check.stderr.strip()}")
    policy = subprocess.run(["apt-cache", "policy", "linux-image-cloud-amd64"], capture_output=True, text=True)
    if "Candidate: " not in policy.stdout or "Candidate: (none)" in policy.stdout:
        pytest.skip("apt has no package lists for linux-image-cloud-amd64 here: run `apt-get update`")
    user_can_run = subprocess.run([*USER, "test", "-x", str(BOOTSTRAP)], capture_output=True)
    if user_can_run.returncode != 0:
        pytest.skip(f"uid 65534 cannot run {BOOTSTRAP} (the checkout is not world-readable)")


@pytest.fixture
def shared_dir():
    """A directory uid 65534 can read (pytest's tmp_path is private to root); removed after."""
    path = Path(tempfile.mkdtemp(prefix="ndh-bootstrap-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_as_a_user_the_check_sees_the_package_lists_and_the_sbin_tools(ready_machine):
    for _ in range(RUNS):
        result = bootstrap("--check")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "apt-get update" not in result.stderr
        # mke2fs is in /usr/sbin, off this PATH; the micro image's build finds it there.
        assert "mke2fs /usr/sbin/mke2fs" in result.stdout, result.stdout
        assert result.stdout.rstrip().endswith("the rest needs no root: run ci/bootstrap as nobody")


def test_as_a_user_exactly_the_missing_packages_are_listed_with_sudo(ready_machine, shared_dir):
    # A PATH of every command of /usr/bin but shellcheck and age: their packages look missing.
    for entry in Path("/usr/bin").iterdir():
        if entry.name not in ("shellcheck", "age"):
            (shared_dir / entry.name).symlink_to(entry)
    for args in ((), ("--check",)):
        result = bootstrap(*args, path=str(shared_dir))
        assert result.returncode == 1
        assert result.stderr == (
            "bootstrap: missing system packages: shellcheck age\n"
            "bootstrap: install them with: sudo apt-get update && sudo apt-get install shellcheck age\n"
        )
        assert result.stdout == ""


def test_a_root_rerun_with_nothing_missing_runs_no_apt_get(ready_machine, shared_dir):
    """A copy of ci/bootstrap beside a stand-in .venv/bin/python that records its arguments (pip
    and the image build are not this test's business), and a stand-in apt-get first on PATH."""
    (shared_dir / "ci").mkdir()
    script = shared_dir / "ci" / "bootstrap"
    shutil.copy(BOOTSTRAP, script)
    calls = shared_dir / "calls"
    _stand_in(shared_dir / ".venv" / "bin" / "python", f'echo "python $*" >>{calls}')
    _stand_in(shared_dir / "fake-bin" / "apt-get", f'echo "apt-get $*" >>{calls}')
    for _ in range(RUNS):
        calls.write_text("")
        result = bootstrap(as_user=False, script=script, path=f"{shared_dir / 'fake-bin'}:{USER_PATH}:/usr/sbin:/sbin")
        assert calls.read_text().splitlines() == [
            "python -m pip install -q --disable-pip-version-check -e .[test]",
            "python -m harness.images.ready",
        ], result.stdout + result.stderr
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.endswith("bootstrap: ready\n")


def _stand_in(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test_the_micro_image_step_fails_in_one_line(tmp_path):
    """Whatever the image lacks, ci/bootstrap's last step says so in one line, no traceback."""
    python = REPO / ".venv" / "bin" / "python"
    if not python.exists():
        pytest.skip(f"{python} is missing: run ci/bootstrap")
    empty = tmp_path / "not-an-image"
    empty.mkdir()
    for args in ((), ("--check",)):
        result = subprocess.run([str(python), "-m", "harness.images.ready", *args], capture_output=True, text=True,
                                env=dict(os.environ, NDH_MICRO_IMAGE=str(empty)), timeout=60)
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr == (
            f"micro image: cannot build it: NDH_MICRO_IMAGE={empty} is not a micro image (no vmlinuz, "
            "initrd, disk-base.qcow2, manifest.json): use the Nix-built image: `nix run .#scenarios`, or "
            "`nix develop` (both set NDH_MICRO_IMAGE), or `export NDH_MICRO_IMAGE=$(nix build "
            ".#micro-image --no-link --print-out-paths)`; on Debian, run ci/bootstrap\n"
        )
