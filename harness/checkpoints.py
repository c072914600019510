"""Checkpoints: a named fleet state that costs minutes to reach, reached once per fleet.

    value = checkpoints.reach(fleet, "baseline", setup)

The first use runs `setup(directory)` on the fleet as it is, snapshots every machine at one
moment under the checkpoint's name (Fleet.snapshot), and keeps setup's return value; every
later use restores that snapshot (Fleet.restore) and returns the kept value without running
setup. A setup may reach another checkpoint first: the chain is recorded, and the checkpoint is
made again when any link of it changed.

What is kept, per fleet, in <fleet state dir>/checkpoints.json (so a kept fleet keeps its
checkpoints for later processes, and `deploy-harness status` lists them):
  value        setup's return value: plain JSON data, checked on the first use (the kept copy
               is what every use returns, the first included)
  made         when it was made (seconds since the epoch)
  fingerprint  sha256 of setup's source code (its code object where there is no source), the
               fleet spec's nodes, and the fingerprints of the checkpoints its setup reached.
               A use whose fingerprint differs makes the checkpoint again and says why.
               Only a use can decide that: the setup is in the test code, which the
               `deploy-harness` commands never see; they list and restore records as they are.
A record is written only after every machine saved the snapshot: a setup that fails, or an
interrupt, leaves no checkpoint, and the next use tries again. `directory` is the checkpoint's
own folder under the fleet's state directory, for host files the setup writes.
Machines QEMU cannot snapshot (Fleet.snapshots_supported false): setup runs at every use, said once.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

RECORDS = "checkpoints.json"
NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")

Setup = Callable[[Path], Any]


class CheckpointError(Exception):
    pass


@dataclass(frozen=True)
class Record:
    name: str
    fingerprint: str
    value: Any
    parents: tuple[str, ...]
    setup_s: float
    made: float | None = None  # when (time.time()); None in records of older versions


def check_name(name: str) -> str:
    if not NAME.fullmatch(name) or name.startswith("ndh-"):
        raise ValueError(
            f"checkpoint name {name!r}: use 1-63 lowercase letters, digits and '-', starting with a "
            "letter or digit and not with 'ndh-' (the harness's own snapshots); it names the "
            "machines' snapshots too"
        )
    return name


def directory(fleet: Any, name: str) -> Path:
    return fleet.state_dir / "checkpoints" / check_name(name)


def records(state_dir: Path) -> dict[str, Record]:
    """The checkpoints kept in a fleet's state directory (empty when it has none)."""
    try:
        raw = json.loads((Path(state_dir) / RECORDS).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{Path(state_dir) / RECORDS} cannot be read ({exc}): delete it to start afresh") from exc
    return {name: Record(name, r["fingerprint"], r["value"], tuple(r["parents"]), r["setup_s"], r.get("made"))
            for name, r in raw.items()}


def _write(state_dir: Path, kept: dict[str, Record]) -> None:
    path = Path(state_dir) / RECORDS
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(
        {r.name: {"fingerprint": r.fingerprint, "value": r.value, "parents": list(r.parents),
                  "setup_s": r.setup_s, "made": r.made} for r in kept.values()}, indent=1, sort_keys=True))
    os.replace(partial, path)  # a reader never sees half a file


def _plain(name: str, value: Any) -> Any:
    """The JSON copy of value, or a clear error: it must survive the process."""
    try:
        copy = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {name!r}: setup returned {type(value).__name__}, which is not plain data "
            f"({exc}); return JSON data (dict with str keys, list, str, int, float, bool, None)"
        ) from None
    if copy != value:
        raise CheckpointError(
            f"checkpoint {name!r}: setup's value does not survive JSON unchanged (a tuple, or a "
            "dict with non-str keys?); return lists and str-keyed dicts so every use gets the same value"
        )
    return copy


def _source(setup: Callable, seen: set[int] | None = None) -> bytes:
    """The code a setup runs, as far as its own module goes: its source, then (transitively)
    that of the functions of its module it names, and of the classes of its module whose
    objects it closes over (a setup written inside a method closes over `self`)."""
    seen = set() if seen is None else seen
    seen.add(id(setup))
    code = getattr(setup, "__code__", None)
    if code is None:
        raise CheckpointError(f"setup {setup!r} is not a function: nothing to fingerprint")
    try:
        text = inspect.getsource(setup).encode()
    except (OSError, TypeError):  # no source file (an interactive session): the byte code
        text = code.co_code + repr(code.co_consts).encode()
    module = getattr(setup, "__module__", None)
    named = [getattr(setup, "__globals__", {}).get(name) for name in _names(code)]
    closed = [cell.cell_contents for cell in (getattr(setup, "__closure__", None) or ())
              if _filled(cell)]
    for value in named + closed:
        if inspect.isfunction(value) and value.__module__ == module and id(value) not in seen:
            text += _source(value, seen)
        elif not inspect.isfunction(value) and value is not None:
            cls = value if inspect.isclass(value) else type(value)
            if cls.__module__ == module and id(cls) not in seen:
                seen.add(id(cls))
                text += _class_source(cls)
    return text


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:  # a cell not yet assigned
        return False
    return True


def _class_source(cls: type) -> bytes:
    try:
        return inspect.getsource(cls).encode()
    except (OSError, TypeError):
        return cls.__qualname__.encode()


def _names(code) -> list[str]:
    """The global names a function's code (and the functions defined in it) refers to."""
    names = list(code.co_names)
    for const in code.co_consts:
        if inspect.iscode(const):
            names += _names(const)
    return names


class Checkpoints:
    """The checkpoints of one booted fleet (Fleet.checkpoints)."""

    def __init__(self, fleet: Any) -> None:
        self.fleet = fleet
        self.kept = records(fleet.state_dir)
        self.running: list[list[str]] = []  # the parents each running setup reached
        self.said_unsupported = False

    def fingerprint(self, setup: Setup, parents: tuple[str, ...]) -> str:
        digest = hashlib.sha256(_source(setup))
        digest.update(repr(sorted(self.fleet.spec.nodes.items())).encode())
        for parent in parents:
            digest.update(self.kept[parent].fingerprint.encode() if parent in self.kept else b"?")
        return digest.hexdigest()

    def reach(self, name: str, setup: Setup) -> Any:
        check_name(name)
        if self.running:
            self.running[-1].append(name)
        record = self.kept.get(name)
        if record is not None:
            changed = self._changed(record, setup)
            if changed is None:
                self.fleet.restore(name)
                return record.value
            self.fleet.progress(f"checkpoint {name}: {changed}; making it again")
        if not self.fleet.snapshots_supported:
            if not self.said_unsupported:
                self.said_unsupported = True
                self.fleet.progress(f"fleet {self.fleet.spec.name}: checkpoints run their setup at every "
                                    f"use ({', '.join(sorted(self.fleet.cold_boot))} cannot be snapshotted)")
            return _plain(name, self._run(name, setup)[0])
        return self._make(name, setup)

    def _changed(self, record: Record, setup: Setup) -> str | None:
        for parent in record.parents:
            if parent not in self.kept:
                return f"the checkpoint it starts from, {parent}, is gone"
        if record.fingerprint != self.fingerprint(setup, record.parents):
            return "its setup, its chain or the fleet spec changed since it was made"
        return None

    def _run(self, name: str, setup: Setup) -> tuple[Any, tuple[str, ...], float]:
        folder = directory(self.fleet, name)
        folder.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self.running.append([])
        try:
            value = setup(folder)
        finally:
            parents = tuple(self.running.pop())
        return value, parents, time.monotonic() - started

    def _make(self, name: str, setup: Setup) -> Any:
        self.kept.pop(name, None)
        _write(self.fleet.state_dir, self.kept)  # a stale record never outlives a failed remake
        value, parents, took = self._run(name, setup)
        value = _plain(name, value)
        self.fleet.snapshot(name)
        self.kept[name] = Record(name, self.fingerprint(setup, parents), value, parents, round(took, 3),
                                 round(time.time(), 3))
        _write(self.fleet.state_dir, self.kept)
        self.fleet.progress(f"checkpoint {name} made in {took:.1f} s; later uses restore it")
        return value


def of(fleet: Any) -> Checkpoints:
    """The checkpoints of a booted fleet (kept on it, read from its state directory once)."""
    found = getattr(fleet, "_checkpoints", None)
    if found is None:
        found = Checkpoints(fleet)
        fleet._checkpoints = found
    return found


def reach(fleet: Any, name: str, setup: Setup) -> Any:
    """The kept value of checkpoint `name` on `fleet`, reached by restore or by setup."""
    return of(fleet).reach(name, setup)


__all__ = ["CheckpointError", "Checkpoints", "Record", "check_name", "directory", "of", "reach", "records"]
