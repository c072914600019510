"""NDH_NODE_SCRIPTS (harness/images/prebuilt.py): start scripts built elsewhere, as the scenario
checks hand them in from the Nix build's inputs, are used as they are, with no nix at all; a
wrong table is an error that says what is wrong, never a silent skip."""
from __future__ import annotations

import json
import os

import pytest

from harness.fleet import FleetSpec, NodeSpec
from harness.images import nixos as image_mod
from harness.images.nixos import NixosTestImage
from harness.images.prebuilt import ENV, PrebuiltScriptsError

NODES = ("alpha", "beta")
SPEC = FleetSpec("prebuilt", {node: NodeSpec(vlans=(1,)) for node in NODES})


@pytest.fixture(autouse=True)
def _fresh_verdicts():
    image_mod.forget_verdicts()
    yield
    image_mod.forget_verdicts()


@pytest.fixture
def no_nix(monkeypatch, tmp_path):
    """A PATH without nix, and a flake that does not exist: any nix call would fail."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    return NixosTestImage(flake=str(tmp_path / "no-such-flake"))


def fake_scripts(directory, nodes=NODES, executable=True) -> dict[str, str]:
    table = {}
    for node in nodes:
        script = directory / f"vm-{node}" / "bin" / f"run-{node}-vm"
        script.parent.mkdir(parents=True)
        script.write_text(f"#!/bin/sh\necho {node}\n")
        script.chmod(0o755 if executable else 0o644)
        table[node] = str(script)
    return table


def test_the_named_scripts_are_used_without_nix(monkeypatch, tmp_path, no_nix):
    table = fake_scripts(tmp_path)
    monkeypatch.setenv(ENV, json.dumps(table))
    progress: list[str] = []

    scripts = no_nix.start_scripts(SPEC, tmp_path / "state", progress.append)

    assert {node: str(path) for node, path in scripts.items()} == table
    assert any(ENV in line and "no nix build" in line for line in progress), progress
    verdict = image_mod.availability(no_nix, NODES)
    assert verdict.ok, verdict.reason


def test_without_the_variable_nix_is_asked_as_before(monkeypatch, no_nix):
    monkeypatch.delenv(ENV, raising=False)
    verdict = image_mod.availability(no_nix, NODES)
    assert not verdict.ok
    assert verdict.reason.startswith("no nix:"), verdict.reason


def test_extra_nodes_in_the_table_are_ignored(monkeypatch, tmp_path, no_nix):
    table = fake_scripts(tmp_path, NODES + ("gamma",))
    monkeypatch.setenv(ENV, json.dumps(table))
    scripts = image_mod.build_vms(no_nix, NODES)
    assert sorted(scripts) == list(NODES)


@pytest.mark.parametrize(
    "make_value, expected",
    [
        (lambda d: "{not json", "is not JSON"),
        (lambda d: json.dumps(["/bin/true"]), "must be a JSON object of strings"),
        (lambda d: json.dumps({"alpha": fake_scripts(d, ("alpha",))["alpha"]}), "has no start script for beta"),
        (lambda d: json.dumps({**fake_scripts(d, ("alpha",)), "beta": str(d / "missing")}), "the start script of beta"),
        (lambda d: json.dumps(fake_scripts(d, executable=False)), "is not an executable file"),
    ],
    ids=["not-json", "not-an-object", "node-missing", "path-missing", "not-executable"],
)
def test_a_wrong_table_is_an_error_not_a_skip(monkeypatch, tmp_path, no_nix, make_value, expected):
    monkeypatch.setenv(ENV, make_value(tmp_path))
    with pytest.raises(PrebuiltScriptsError, match=expected) as raised:
        image_mod.availability(no_nix, NODES)
    assert ENV in str(raised.value)


def test_the_check_s_variable_name_is_the_harness_s():
    """test/scenario-checks.nix sets the variable this module reads."""
    from nixos_testlib import REPO

    assert f"{ENV} =" in (REPO / "test" / "scenario-checks.nix").read_text()


# --- a real fleet from the table, as a scenario check boots one ------------------------------

INNER_TEST = '''
import pytest
from harness.fleet import FleetSpec, NodeSpec
from harness.images.nixos import NixosTestImage

PAIR = FleetSpec(
    "prebuilt-pair",
    {"alpha": NodeSpec(vlans=(1,)), "beta": NodeSpec(vlans=(1,))},
    image=NixosTestImage(flake="/nonexistent-flake"),
)


@pytest.mark.fleet(PAIR)
def test_the_pair_boots_from_the_table(fleet):
    fleet["alpha"].succeed("ping -c 1 -W 5 beta")
'''


def test_pytest_boots_a_fleet_from_the_table_and_never_calls_nix(tmp_path):
    """nixpkgs-shaped start scripts (the micro image's kernel, `-machine accel=kvm:tcg` as newer
    nixpkgs writes it, the root disk named drive1) named by NDH_NODE_SCRIPTS; a `nix` first on
    PATH records any call."""
    import shutil
    import subprocess
    import sys

    from harness.images import micro
    from nixos_testlib import REPO
    from support import scratch_dir

    if shutil.which("qemu-system-x86_64") is None or shutil.which("vde_switch") is None:
        pytest.skip("qemu-system-x86_64 or vde_switch is not installed (run ci/bootstrap)")
    image = micro.ensure_micro_image()
    launcher = tmp_path / "qemu-launcher"
    launcher.write_text('#!/bin/sh\nexec qemu-system-x86_64 -machine accel=kvm:tcg -cpu max "$@"\n')
    launcher.chmod(0o755)
    hosts = {"alpha": "192.168.1.1", "beta": "192.168.1.2"}
    table = {}
    for number, node in enumerate(("alpha", "beta"), 1):
        script = tmp_path / f"{node}-vm" / "bin" / f"run-{node}-vm"
        script.parent.mkdir(parents=True)
        text = micro.start_script_text(image, micro.MicroNode(node, number, (1,), hosts), qemu=str(launcher))
        script.write_text(text.replace("disk0", "drive1"))  # qemu-vm.nix's name for the root disk
        script.chmod(0o755)
        table[node] = str(script)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    called = tmp_path / "nix-was-called"
    (fake_bin / "nix").write_text(f'#!/bin/sh\necho "$@" >> {called}\nexit 1\n')
    (fake_bin / "nix").chmod(0o755)
    (tmp_path / "test_inner.py").write_text(INNER_TEST)
    # Short: the fleet's unix sockets live in its state directory (under 108 bytes).
    state = scratch_dir("prebuilt")
    env = {
        **os.environ,
        ENV: json.dumps(table),
        "PATH": f"{fake_bin}:{os.environ['PATH']}",
        "PYTHONPATH": str(REPO),
        "NDH_STATE_DIR": str(state),
        "NDH_FLEETS_DIR": str(tmp_path / "fleets"),
    }
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "test_inner.py", "--vm-accel=tcg", "-p", "no:cacheprovider",
             "-rA", "--junitxml=junit.xml"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        )
    finally:
        shutil.rmtree(state, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout
    assert not called.exists(), f"nix was called: {called.read_text()}"
