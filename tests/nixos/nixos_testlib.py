"""Helpers for the tests of the NixOS half of the harness (a unique module name: pytest imports
test helpers by their base name)."""
from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path


from harness.nixos import SYSTEMD_BOOT_GUID, NixosPaths

REPO = Path(__file__).resolve().parents[2]
EXPORTER = REPO / "modules" / "services" / "monitoring" / "generation-exporter.sh"


def run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stderr}"
    return result.stdout.strip()


class Store:
    """Toplevel-shaped store paths (nixos-version, kernel, initrd) and deploy-rs-shaped
    activatable buildEnvs around them, created with `nix-store --add` and deleted afterwards."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.tag = uuid.uuid4().hex  # unique paths per run
        self.created: list[str] = []
        self._files: dict[str, str] = {}

    def add(self, path: Path) -> str:
        stored = run("nix-store", "--add", str(path))
        self.created.append(stored)
        return stored

    def file(self, name: str) -> str:
        if name not in self._files:
            source = self.workdir / "files" / name
            source.parent.mkdir(parents=True, exist_ok=True)
            source.write_text(f"{name} {self.tag}\n")
            self._files[name] = self.add(source)
        return self._files[name]

    def system(self, name: str, kernel: str = "kernel-a", initrd: str = "initrd-a") -> tuple[str, str]:
        """(toplevel, activatable) for a fake NixOS system."""
        base = self.workdir / "systems" / f"{name}-{kernel}-{initrd}"
        top = base / f"nixos-system-{name}"
        top.mkdir(parents=True)
        (top / "nixos-version").write_text(f"26.05.{name}.{self.tag}\n")
        (top / "kernel").symlink_to(self.file(kernel))
        (top / "initrd").symlink_to(self.file(initrd))
        toplevel = self.add(top)
        # deploy-rs lib.activate.custom: a buildEnv of the toplevel plus its two scripts.
        env = base / f"activatable-nixos-system-{name}"
        env.mkdir()
        for entry in ("nixos-version", "kernel", "initrd"):
            (env / entry).symlink_to(f"{toplevel}/{entry}")
        (env / "deploy-rs-activate").write_text("#!/bin/sh\n")
        (env / "activate-rs").write_text("#!/bin/sh\n")
        return toplevel, self.add(env)

    def delete(self) -> None:
        subprocess.run(["nix-store", "--delete", *reversed(self.created)], capture_output=True)


class Root:
    """A fake NixOS machine under a directory: profiles, /run links, ESP, EFI variables."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths = NixosPaths.under(str(root))
        self.esp = root / "boot"
        self.textfile = root / "textfile"
        for directory in (self.paths.profiles_dir, self.paths.efivars, self.textfile, root / "run"):
            Path(directory).mkdir(parents=True, exist_ok=True)

    def deploy(self, store_path: str) -> int:
        run("nix-env", "-p", f"{self.paths.profiles_dir}/system", "--set", store_path)
        return int(os.readlink(f"{self.paths.profiles_dir}/system").split("-")[1])

    def link(self, which: str, target: str) -> None:
        path = Path(self.paths.current_system if which == "current" else self.paths.booted_system)
        if path.is_symlink():
            path.unlink()
        path.symlink_to(target)

    def loader_conf(self, text: str) -> None:
        path = Path(self.paths.loader_conf)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def entry(self, file_name: str, generation: int, toplevel: str | None, title: str = "NixOS") -> None:
        lines = [f"title {title}", f"version Generation {generation} 26.05 (Linux 6.12)"]
        lines += ["linux /EFI/nixos/kernel.efi", "initrd /EFI/nixos/initrd.efi"]
        if toplevel is not None:
            lines.append(f"options init={toplevel}/init root=fstab loglevel=4")
        path = Path(self.paths.boot_entries) / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")

    def efi_variable(self, name: str, value: str) -> None:
        Path(self.paths.efivars, f"{name}-{SYSTEMD_BOOT_GUID}").write_bytes(
            b"\x07\x00\x00\x00" + (value + "\0").encode("utf-16-le")
        )

    def exporter_metrics(self) -> dict[str, int]:
        """Run the fleet's exporter on this root; its gauges without config age."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("NIXOS_GEN_")}
        env.update(
            NIXOS_GEN_OUTPUT_DIR=str(self.textfile),
            NIXOS_GEN_HOST="parity",
            NIXOS_GEN_PROFILES_DIR=self.paths.profiles_dir,
            NIXOS_GEN_CURRENT_SYSTEM=self.paths.current_system,
            NIXOS_GEN_BOOTED_SYSTEM=self.paths.booted_system,
            NIXOS_GEN_ESP=str(self.esp),
            NIXOS_GEN_BOOT_ENTRIES=self.paths.boot_entries,
            NIXOS_GEN_EFIVARS=self.paths.efivars,
            NIXOS_GEN_NOW="2000000000",
        )
        result = subprocess.run(["bash", str(EXPORTER)], capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode == 0 and not result.stderr, result.stderr
        values = {}
        for line in (self.textfile / "nixos_generation.prom").read_text().splitlines():
            if line.startswith("nixos_") and not line.startswith("nixos_config_age"):
                name, value = line.split("{", 1)[0], line.rsplit(" ", 1)[1]
                values[name] = int(value)
        return values
