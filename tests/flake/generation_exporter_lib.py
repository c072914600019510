"""What the generation exporter's tests share (test_flake_generation_exporter*.py): the
exporter (modules/services/monitoring/generation-exporter.sh) run on this host.

Fake NixOS systems are real store paths (`nix-store --add`), the system profile is a real Nix
profile (`nix-env -p <root>/profiles/system --set`), and /run/current-system, /run/booted-system,
the ESP's loader.conf and entries and the EFI variables live under a temporary root. The output
is parsed with prometheus_client's text parser.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXPORTER = REPO / "modules" / "services" / "monitoring" / "generation-exporter.sh"
OUTPUT_NAME = "nixos_generation.prom"
SYSTEMD_BOOT_GUID = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
NOW = 2_000_000_000
METRICS = [
    "nixos_current_generation",
    "nixos_booted_generation",
    "nixos_boot_generation",
    "nixos_profile_generation",
    "nixos_reboot_pending",
    "nixos_config_age_seconds",
]


def _require_tools():
    for tool in ["nix-store", "nix-env", "bash"]:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found on PATH: the exporter tests build real Nix profiles (install Debian's nix-bin)")


def _add_to_store(path: Path) -> str:
    result = subprocess.run(["nix-store", "--add", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"nix-store --add {path} failed:\n{result.stderr}"
    return result.stdout.strip()


@dataclass(frozen=True)
class System:
    toplevel: str  # a NixOS toplevel: nixos-version, kernel and initrd links
    activatable: str  # deploy-rs's buildEnv around it (what deploy-rs puts into the profile)


class Store:
    """Fake NixOS systems in the real store, built once per test session."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self._files: dict[str, str] = {}
        self._systems: dict[str, System] = {}

    def file(self, name: str) -> str:
        if name not in self._files:
            source = self.workdir / "files" / name
            source.parent.mkdir(parents=True, exist_ok=True)
            source.write_text(f"{name}\n")
            self._files[name] = _add_to_store(source)
        return self._files[name]

    def system(self, name: str, kernel: str = "kernel-a", initrd: str = "initrd-a") -> System:
        key = f"{name}:{kernel}:{initrd}"
        if key not in self._systems:
            top = self.workdir / "systems" / key.replace(":", "_") / f"nixos-system-{name}"
            top.mkdir(parents=True)
            (top / "nixos-version").write_text(f"26.05.{name}")
            (top / "kernel").symlink_to(self.file(kernel))
            (top / "initrd").symlink_to(self.file(initrd))
            toplevel = _add_to_store(top)
            # Shaped like deploy-rs's lib.activate.custom: a buildEnv of the toplevel plus scripts.
            env = self.workdir / "systems" / key.replace(":", "_") / f"activatable-nixos-system-{name}"
            env.mkdir()
            for entry in ["nixos-version", "kernel", "initrd"]:
                (env / entry).symlink_to(f"{toplevel}/{entry}")
            (env / "deploy-rs-activate").write_text("#!/bin/sh\n")
            self._systems[key] = System(toplevel, _add_to_store(env))
        return self._systems[key]


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Store:
    _require_tools()
    return Store(tmp_path_factory.mktemp("store-sources"))


class Host:
    """A fake host root: profiles, /run links, ESP, EFI variables, textfile directory."""

    def __init__(self, root: Path):
        self.root = root
        self.profiles = root / "nix/var/nix/profiles"
        self.run = root / "run"
        self.esp = root / "boot"
        self.efivars = root / "efivars"
        self.output = root / "textfile"
        for directory in [self.profiles, self.run, self.esp, self.efivars, self.output]:
            directory.mkdir(parents=True)

    def deploy(self, store_path: str, created: int | None = None) -> int:
        """`nix-env --set` on the system profile; returns the new generation number."""
        result = subprocess.run(
            ["nix-env", "-p", str(self.profiles / "system"), "--set", store_path],
            capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, f"nix-env --set failed:\n{result.stderr}"
        number = int(os.readlink(self.profiles / "system").split("-")[1])
        if created is not None:
            os.utime(self.profiles / f"system-{number}-link", (created, created), follow_symlinks=False)
        return number

    def link(self, name: str, target: str):
        (self.run / name).symlink_to(target)

    def running(self, current: str, booted: str | None = None):
        """/run/current-system -> current, /run/booted-system -> booted (default: the same)."""
        self.link("current-system", current)
        self.link("booted-system", booted or current)

    def loader_conf(self, text: str):
        (self.esp / "loader").mkdir(exist_ok=True)
        (self.esp / "loader" / "loader.conf").write_text(text)

    def entry(self, filename: str, generation: int, toplevel: str | None, title: str = "NixOS"):
        entries = self.esp / "loader" / "entries"
        entries.mkdir(parents=True, exist_ok=True)
        lines = [f"title {title}", f"version Generation {generation} 26.05 (Linux 6.12), built on 2026-11-25"]
        lines += ["linux /EFI/nixos/kernel.efi", "initrd /EFI/nixos/initrd.efi"]
        if toplevel is not None:
            lines.append(f"options init={toplevel}/init root=fstab loglevel=4")
        lines.append("sort-key nixos")
        (entries / filename).write_text("\n".join(lines) + "\n")

    def efi_variable(self, name: str, value: str):
        (self.efivars / f"{name}-{SYSTEMD_BOOT_GUID}").write_bytes(
            b"\x07\x00\x00\x00" + (value + "\0").encode("utf-16-le")
        )

    def environment(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NIXOS_GEN_")}
        env.update(
            NIXOS_GEN_OUTPUT_DIR=str(self.output),
            NIXOS_GEN_HOST="testhost",
            NIXOS_GEN_PROFILES_DIR=str(self.profiles),
            NIXOS_GEN_CURRENT_SYSTEM=str(self.run / "current-system"),
            NIXOS_GEN_BOOTED_SYSTEM=str(self.run / "booted-system"),
            NIXOS_GEN_ESP=str(self.esp),
            NIXOS_GEN_EFIVARS=str(self.efivars),
            NIXOS_GEN_NOW=str(NOW),
        )
        env.update(overrides)
        return env

    def export(self, **overrides: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(EXPORTER)], capture_output=True, text=True, timeout=60,
            env=self.environment(**overrides),
        )

    def metrics(self, **overrides: str) -> dict[str, float]:
        result = self.export(**overrides)
        assert result.returncode == 0, f"exporter failed:\n{result.stderr}"
        assert result.stderr == "", f"exporter complained:\n{result.stderr}"
        return parse(self.output / OUTPUT_NAME, host=overrides.get("NIXOS_GEN_HOST", "testhost"))


def parse(path: Path, host: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    for family in text_string_to_metric_families(path.read_text()):
        assert family.type == "gauge", family
        assert family.documentation, f"{family.name} has no HELP text"
        for sample in family.samples:
            assert sample.labels == {"host": host}, sample
            values[sample.name] = sample.value
    assert sorted(values) == sorted(METRICS)
    return values


@pytest.fixture
def host(tmp_path, store) -> Host:
    pytest.importorskip("prometheus_client", reason="prometheus_client is missing from this Python: pip install -e . into .venv (ci/bootstrap does)")
    return Host(tmp_path / "root")
