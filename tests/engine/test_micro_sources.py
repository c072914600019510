"""Where the micro image comes from when neither $NDH_MICRO_IMAGE nor the Debian recipe gives one
(harness/images/micro_sources.py): one already in the cache, built from this checkout's guest
scripts, or the flake's, built by the host's nix. The images here are layouts only (what
micro.load_prebuilt checks); the nix is a stand-in that records its calls and "builds" one."""
from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from harness.images import micro, micro_sources


def image_layout(directory: Path, guest_from: Path = micro.GUEST_FILES) -> Path:
    """The files a micro image has, empty, with the guest scripts of `guest_from`."""
    (directory / "guest").mkdir(parents=True)
    for name in ("vmlinuz", "initrd", "disk-base.qcow2"):
        (directory / name).write_bytes(b"")
    (directory / "manifest.json").write_text(json.dumps({"inputs": {"recipe": "test"}, "bios": None}))
    for path in guest_from.iterdir():
        (directory / "guest" / path.name).write_bytes(path.read_bytes())
    return directory


def test_an_empty_cache_has_none_and_says_where_it_looked(tmp_path):
    found = micro_sources.from_cache(tmp_path)
    assert found.directory is None and found.how == f"none in the cache ({tmp_path / 'micro-image'})"


def test_the_cache_s_newest_image_of_this_checkout_is_taken(tmp_path):
    images = tmp_path / "micro-image"
    older = image_layout(images / "older")
    newer = image_layout(images / "newer")
    os.utime(older / "manifest.json", (1, 1))
    found = micro_sources.from_cache(tmp_path)
    assert found.directory == newer and found.how == f"the one already in the cache, {newer}"


def test_an_image_of_other_guest_scripts_is_never_taken(tmp_path):
    other = image_layout(tmp_path / "micro-image" / "other")
    (other / "guest" / "backdoor").write_text("#!/bin/sh\n# another checkout's backdoor\n")
    image_layout(tmp_path / "micro-image" / ".building-half").joinpath("manifest.json").unlink()  # half made
    found = micro_sources.from_cache(tmp_path)
    assert found.directory is None
    assert found.how == f"none of the 1 image(s) in {tmp_path / 'micro-image'} was built from this checkout's guest scripts"


def stand_in_nix(tmp_path: Path, version: str, output: Path) -> Path:
    """A `nix` that reports `version`, records its calls, and builds `#micro-image` as `output`."""
    bin_dir = tmp_path / "nix-bin"
    bin_dir.mkdir()
    (bin_dir / "nix").write_text(textwrap.dedent(f"""\
        #!/bin/sh
        printf '%s\\n' "$*" >> {tmp_path / 'nix-calls'}
        [ "$1" = --version ] && {{ echo "nix (Nix) {version}"; exit 0; }}
        while [ "${{1:-}}" = --extra-experimental-features ]; do shift 2; done
        [ "$1 ${{2:-}}" = "build --help" ] && {{ echo "  --print-out-paths"; exit 0; }}
        case "$*" in build*'#micro-image'*) echo {output}; exit 0 ;; esac
        echo "stand-in nix: unexpected call: $*" >&2
        exit 99
        """))
    (bin_dir / "nix").chmod(0o755)
    return bin_dir


def test_nix_builds_the_flake_s_image(tmp_path, monkeypatch):
    output = image_layout(tmp_path / "store" / "ndh-micro-image")
    monkeypatch.setenv("PATH", f"{stand_in_nix(tmp_path, '2.24.0', output)}{os.pathsep}{os.environ['PATH']}")
    lines = []
    found = micro_sources.from_nix(lines.append, flake="/some/checkout")
    assert found.directory == output
    assert found.how == f"built by nix from /some/checkout#micro-image, {output}"
    assert any("build" in call and "/some/checkout#micro-image" in call
               for call in (tmp_path / "nix-calls").read_text().splitlines())
    assert lines[0] == "building the micro image with nix (/some/checkout#micro-image; nix's progress follows)"
    micro.load_prebuilt(found.directory)  # an image the fleet can boot


def test_a_nix_too_old_for_nixpkgs_is_not_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{stand_in_nix(tmp_path, '2.8.0', tmp_path)}{os.pathsep}{os.environ['PATH']}")
    found = micro_sources.from_nix(flake="/some/checkout")
    assert found.directory is None
    assert found.how.startswith("nix cannot build it: nix 2.8.0 (") and "is older than 2.18" in found.how
    assert (tmp_path / "nix-calls").read_text().splitlines() == ["--version"]


def test_without_nix_it_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    found = micro_sources.from_nix(flake="/some/checkout")
    assert found.directory is None and found.how.startswith("no nix to build it: nix is not installed")


def test_the_cache_comes_before_nix_and_both_reasons_are_given_when_neither_has_one(tmp_path, monkeypatch):
    monkeypatch.setenv("NDH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))
    found = micro_sources.find()
    assert found.directory is None
    assert found.how.startswith(f"none in the cache ({tmp_path / 'cache' / 'micro-image'}); no nix to build it: ")
    cached = image_layout(tmp_path / "cache" / "micro-image" / "key")
    assert micro_sources.find().directory == cached  # no nix asked (there is none to ask)


@pytest.fixture(autouse=True)
def _no_prebuilt(monkeypatch):
    monkeypatch.delenv(micro.PREBUILT_ENV, raising=False)
