"""deploy-rs profiles made by deploy-rs's own Nix code, laid out in the real store.

deploy-rs-activate.nix evaluates deploy-rs's `lib.activate` and the fleet's generator with
stand-ins for nixpkgs' builders: every writeTextFile and buildEnv is a derivation that is never
built. Here each one is laid out as its builder would (a file, executable or not, at its
destination; a tree of symlinks merging its paths), added with `nix-store --add`, and every
stand-in's output path in the others' text is replaced by the path it really got. What runs is
deploy-rs's own script text, with the store paths it names.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from deploy_testlib import StorePaths
from support.upstream import deploy_rs_src, nixpkgs_lib

EVAL = Path(__file__).resolve().parent / "deploy-rs-activate.nix"
NIX_COMMAND = ["--extra-experimental-features", "nix-command"]


@dataclass(frozen=True)
class Profile:
    closure: str  # the activatable closure, in the store
    profile_path: str | None  # None: the system profile


def _nix_string(value: str) -> str:
    return json.dumps(value).replace("$", "\\$")


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, **kwargs)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(argv[:3])} … failed ({result.returncode}):\n{result.stderr}")
    return result


def _derivations(drv_path: str) -> dict[str, dict[str, str]]:
    """Each derivation the profile needs (its .drv path: its environment), from `nix derivation
    show -r` (Nix before 2.15 calls it `nix show-derivation`)."""
    store = str(Path(drv_path).parent)
    for command in (["derivation", "show"], ["show-derivation"]):
        result = subprocess.run(["nix", *NIX_COMMAND, *command, "-r", drv_path],
                                capture_output=True, text=True, timeout=120)
        if result.returncode == 0:
            # Newer Nix names them without the store directory.
            return {(key if key.startswith("/") else f"{store}/{key}"): entry["env"]
                    for key, entry in json.loads(result.stdout).items()}
    raise AssertionError(f"nix could not show {drv_path}:\n{result.stderr}")


class StandInBuilds:
    """Makes the profiles of one fake host whose profiles, /run and ESP live under `root`."""

    def __init__(self, root: Path, workdir: Path, store: StorePaths) -> None:
        self.root, self.workdir, self.store = root, workdir, store
        self.shell = shutil.which("bash") or "/bin/sh"

    def profile(self, design: str, toplevel: str) -> Profile:
        """design: "main", "test" or "old-test" (deploy-rs-activate.nix says what each is)."""
        name = Path(toplevel).name.split("-", 1)[1]
        args = ["--arg", "lib", str(nixpkgs_lib()), "--arg", "deployRs", str(deploy_rs_src()),
                "--argstr", "runtimeShell", self.shell, "--argstr", "root", str(self.root),
                "--argstr", "design", design,
                "--arg", "toplevel", f"{{ name = {_nix_string(name)}; outPath = {_nix_string(toplevel)}; }}"]
        # Read-write: the stand-in derivations are written to the store, to be shown below.
        result = _run(["nix-instantiate", "--read-write-mode", "--eval", "--strict", "--json", str(EVAL), *args])
        evaluated = json.loads(result.stdout)
        return Profile(self._realise(evaluated["drvPath"]), evaluated["profilePath"])

    def _realise(self, drv_path: str) -> str:
        shown = _derivations(drv_path)
        self.store.add(*shown)  # deleted after the test, with what is laid out from them
        derivations = {env["out"]: env for env in shown.values()}
        real: dict[str, str] = {}
        pattern = re.compile("|".join(map(re.escape, derivations)))

        def substituted(text: str) -> str:
            return pattern.sub(lambda match: lay_out(match.group(0)), text)

        def lay_out(out: str) -> str:
            if out not in real:
                env = derivations[out]
                kind = env.get("ndhKind")
                if kind == "writeTextFile":
                    real[out] = self._write_text_file(env, substituted(env["text"]))
                elif kind == "buildEnv":
                    real[out] = self._build_env(env["name"], substituted(env["paths"]).split())
                else:
                    raise AssertionError(f"{env['name']}: not a stand-in this test can lay out ({kind})")
            return real[out]

        return lay_out(_output_of(drv_path, derivations))

    def _add(self, path: Path) -> str:
        added = _run(["nix-store", "--add", str(path)]).stdout.strip()
        self.store.add(added)
        return added

    def _fresh(self, name: str) -> Path:
        directory = self.workdir / f"build-{len(list(self.workdir.glob('build-*')))}"
        directory.mkdir()
        return directory / name

    def _write_text_file(self, env: dict[str, str], text: str) -> str:
        top = self._fresh(env["name"])
        target = top / env["destination"].lstrip("/") if env["destination"] else top
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(0o555 if env["executable"] else 0o444)
        return self._add(top)

    def _build_env(self, name: str, paths: list[str]) -> str:
        top = self._fresh(name)
        top.mkdir()
        for path in paths:
            _merge(Path(path), top)
        return self._add(top)


def _output_of(drv_path: str, derivations: dict[str, dict[str, str]]) -> str:
    """The output of drv_path: the one no other stand-in names."""
    named = " ".join(env.get("text", "") + " " + env.get("paths", "") for env in derivations.values())
    tops = [out for out in derivations if out not in named]
    if len(tops) != 1:
        raise AssertionError(f"{drv_path}: expected one top output, found {tops}")
    return tops[0]


def _merge(source: Path, into: Path) -> None:
    """buildEnv: a symlink per entry; a directory several paths share becomes a real one."""
    for entry in source.iterdir():
        link = into / entry.name
        if not link.exists() and not link.is_symlink():
            link.symlink_to(entry)
            continue
        if not (entry.is_dir() and link.is_dir()):
            raise AssertionError(f"buildEnv collision on {entry.name} ({entry} and {link.resolve()})")
        if link.is_symlink():
            previous = link.resolve()
            link.unlink()
            link.mkdir()
            _merge(previous, link)
        _merge(entry, link)
