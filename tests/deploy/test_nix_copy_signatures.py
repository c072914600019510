"""Why every push of what the harness or CI built carries `--no-check-sigs` (the twins' copies to
the deployer and the cache twin, harness/twins/twin_fleet.py; the scenarios' push to the cache
node; build.yml's push-to-cache): `nix copy` checks signatures on the receiving side unless told
not to, even where the receiver would trust the sender, and a path built locally has none.
Against the host's real nix, between two scratch stores (nothing touches /nix/store)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from deploy_testlib import require_nix

# The builder inside the sandbox of a scratch store, where nothing of the host's store is
# visible: a statically linked shell (the micro image's build needs the same busybox).
STATIC_SHELL = Path("/bin/busybox")
UNSIGNED = """derivation {
  name = "ndh-unsigned";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "echo built here > $out" ];
}"""


@pytest.fixture
def unsigned_path(tmp_path: Path) -> tuple[Path, str]:
    """An input-addressed path built in a scratch store: no signature, not content-addressed
    (content-addressed paths need no signature, so `nix-store --add` would prove nothing)."""
    require_nix()
    if not STATIC_SHELL.exists():
        pytest.skip(f"needs a statically linked busybox at {STATIC_SHELL} (Debian's busybox-static) "
                    "to build a path inside a scratch store's sandbox")
    source = tmp_path / "source"
    built = subprocess.run(
        ["nix-build", "--no-out-link", "--store", str(source), "--option", "sandbox", "true",
         "--option", "sandbox-paths", f"/bin/sh={STATIC_SHELL}", "--option", "substituters", "",
         "-E", UNSIGNED],
        capture_output=True, text=True, timeout=300,
    )
    if built.returncode != 0:
        pytest.skip(f"cannot build in a scratch store here (a sandbox needs user namespaces): {built.stderr[-500:]}")
    return source, built.stdout.strip().splitlines()[-1]


def copy(source: Path, target: Path, path: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["nix", "--extra-experimental-features", "nix-command", "copy", *flags,
         "--from", str(source), "--to", str(target), path],
        capture_output=True, text=True, timeout=120,
    )


def valid(store: Path, path: str) -> bool:
    return subprocess.run(["nix-store", "--store", str(store), "--check-validity", path],
                          capture_output=True).returncode == 0


def test_an_unsigned_path_is_refused_without_no_check_sigs_and_taken_with_it(unsigned_path, tmp_path):
    source, path = unsigned_path
    target = tmp_path / "target"
    refused = copy(source, target, path)
    assert refused.returncode != 0 and "signature" in refused.stderr, refused.stderr
    assert not valid(target, path)
    taken = copy(source, target, path, "--no-check-sigs")
    assert taken.returncode == 0, taken.stderr
    assert valid(target, path)
