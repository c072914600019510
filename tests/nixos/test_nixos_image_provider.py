"""The NixOS image provider (harness/images/nixos.py) against the host's real nix: the skip
reasons it gives (no nix, offline, no kvm feature), that it tries a build once per process, and
that a build which works gives each node the start script Nix built."""
from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
from support import require

from harness import nix
from harness.fleet import FleetSpec, NodeSpec
from harness.images import nixos as image_mod
from harness.images.nixos import NixosImageUnavailable, NixosTestImage

# No cache.nixos.org lookups and one download attempt: offline failures stay fast here.
OFFLINE = (("substituters", ""), ("download-attempts", "1"))

BUILDER = """
/bin/mkdir -p "$out/bin"
for node in $nodes; do
  printf '#!/bin/sh\\necho "%s|$QEMU_OPTS|$*"\\n' "$node" > "$out/bin/run-$node-vm"
  /bin/chmod +x "$out/bin/run-$node-vm"
done
"""

FLAKE = """
{
  outputs = { self }:
    let
      vm = node: derivation {
        name = "nixos-vm";
        system = "x86_64-linux";
        builder = "/bin/sh";
        args = [ ./builder.sh ];
        nodes = node;
        tag = "@tag@";
        @features@
      };
    in {
      vmChecks.x86_64-linux.vm-test.nodes = {
        alpha.system.build.vm = vm "alpha";
        beta.system.build.vm = vm "beta";
      };
    };
}
"""


@pytest.fixture(autouse=True)
def _fresh_verdicts():
    image_mod.forget_verdicts()
    yield
    image_mod.forget_verdicts()


@pytest.fixture(autouse=True)
def _this_nix_counts_as_new_enough(monkeypatch):
    """This host's nix is older than the NixOS tier accepts; these tests are about what
    happens after that check (test_nixos_first_contact.py tests the check itself)."""
    monkeypatch.setattr(nix, "too_old", lambda executable: None)


@pytest.fixture
def flake_dir(tmp_path):
    """A flake whose vm-test nodes build trivial `run-<node>-vm` scripts; out paths deleted after."""
    require("nix")
    directory = tmp_path / "flake"
    directory.mkdir()
    (directory / "builder.sh").write_text(BUILDER)

    def write(features: str = "") -> str:
        text = FLAKE.replace("@tag@", uuid.uuid4().hex).replace("@features@", features)
        (directory / "flake.nix").write_text(text)
        return f"path:{directory}"

    yield write
    outs = [str(p) for p in Path("/nix/store").glob("*-nixos-vm") if (p / "bin").is_dir()]
    mine = [p for p in outs if any(line.startswith("echo") for line in _read(p))]
    subprocess.run(["nix-store", "--delete", *mine], capture_output=True)


def _read(out: str) -> list[str]:
    lines = []
    for script in Path(out, "bin").glob("run-*-vm"):
        lines += script.read_text().splitlines()[1:]
    return lines


def test_no_nix_is_a_skip_reason(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no nix
    verdict = image_mod.availability(NixosTestImage(flake="path:/nonexistent"), ["alpha"])
    assert not verdict.ok
    assert verdict.reason.startswith("no nix: nix is not installed or not on PATH")


def test_offline_build_gives_nix_s_first_error_lines(tmp_path):
    require("nix")
    directory = tmp_path / "needs-network"
    directory.mkdir()
    # An input nix must download first: here it cannot (no network beyond the registries).
    (directory / "flake.nix").write_text(
        '{ inputs.nixpkgs.url = "http://127.0.0.1:9/nixpkgs.tar.gz"; outputs = { self, nixpkgs }: { }; }'
    )
    image = NixosTestImage(flake=f"path:{directory}", nix_options=OFFLINE)
    verdict = image_mod.availability(image, ["alpha"])
    assert not verdict.ok
    first = verdict.reason.splitlines()[0]
    assert first.startswith("nix cannot build the NixOS test nodes (offline): error: unable to download")
    assert "127.0.0.1:9" in first
    assert "What to do: nix could not download something" in verdict.reason
    assert "--show-trace" not in verdict.reason


def test_the_build_is_tried_once_per_process(tmp_path, monkeypatch):
    require("nix")
    calls = []
    real_build = nix.build

    def counting_build(*args, **kwargs):
        calls.append(args)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(nix, "build", counting_build)
    image = NixosTestImage(flake=f"path:{tmp_path / 'missing-flake'}", nix_options=OFFLINE)
    first = image_mod.availability(image, ["alpha"])
    second = image_mod.availability(image, ["alpha"])
    with pytest.raises(NixosImageUnavailable) as raised:
        image_mod.build_vms(image, ["alpha"])
    assert not first.ok and first == second
    assert raised.value.reason == first.reason
    assert len(calls) == 1


def test_missing_kvm_feature_is_a_skip_reason(flake_dir):
    flake = flake_dir('requiredSystemFeatures = [ "kvm" ];')
    # This host offers kvm; a machine without it is one whose system-features lack it.
    image = NixosTestImage(flake=flake, nix_options=OFFLINE + (("system-features", "benchmark"),))
    verdict = image_mod.availability(image, ["alpha"])
    assert not verdict.ok
    assert verdict.reason.startswith("nix cannot build the NixOS test nodes (missing-system-feature)")
    assert "with features {kvm} is required" in verdict.reason


def test_built_nodes_run_nix_s_start_scripts_with_the_image_s_accel_form(flake_dir, tmp_path):
    image = NixosTestImage(flake=flake_dir(), nix_options=OFFLINE)
    spec = FleetSpec("two", {"alpha": NodeSpec(), "beta": NodeSpec()}, image=image)
    assert image_mod.availability(image, ["alpha", "beta"]).ok
    progress: list[str] = []
    scripts = image.start_scripts(spec, tmp_path / "state", progress.append)

    assert sorted(scripts) == ["alpha", "beta"]
    assert image.accel_options("tcg") == ("-machine", "accel=tcg")
    for node, script in scripts.items():
        assert script.name == f"run-{node}-vm" and str(script).startswith("/nix/store/")
        out = subprocess.run([str(script), "extra"], capture_output=True, text=True, check=True).stdout
        name, _, args = out.strip().split("|")
        assert name == node and args == "extra"
    assert progress == [], "the verdict was cached by availability(): no second build"


def test_a_node_the_build_does_not_provide_is_reported(flake_dir):
    image = NixosTestImage(flake=flake_dir(), nix_options=OFFLINE)
    verdict = image_mod._scripts_by_node([], ["alpha"])
    assert isinstance(verdict, NixosImageUnavailable)
    assert "no bin/run-<node>-vm for alpha" in verdict.reason
    with pytest.raises(NixosImageUnavailable, match="gamma"):
        image_mod.build_vms(image, ["alpha", "gamma"])
