"""The micro image where `micro.ensure_micro_image` cannot make one: no $NDH_MICRO_IMAGE and no
Debian tools, as on NixOS without the flake's app or dev shell. Two more places can have it:

1. the cache: an image built here before (the Debian recipe, `<cache>/micro-image/<key>/`),
   taken only if its guest scripts are this checkout's (`micro.load_prebuilt` checks), the
   newest first;
2. Nix: `nix build <flake>#micro-image`, the flake's own recipe (nix/micro-image.nix), where a
   nix new enough for current nixpkgs is on PATH.

`find` returns the directory of the first one that works, or why none does; the caller names
it in $NDH_MICRO_IMAGE so that every fleet of the process boots it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import nix
from . import micro
from .cachedir import cache_root
from .nixos import default_flake

NIX_ATTRIBUTE = "micro-image"
# How many lines of nix's error a reason carries.
REASON_LINES = 3


@dataclass(frozen=True)
class Found:
    directory: Path | None  # None: nowhere
    how: str  # where it came from, or why neither place has one


def find(progress: Callable[[str], None] = lambda _: None) -> Found:
    cached = from_cache()
    if cached.directory is not None:
        return cached
    built = from_nix(progress)
    if built.directory is not None:
        return built
    return Found(None, f"{cached.how}; {built.how}")


def from_cache(root: Path | None = None) -> Found:
    """The newest image in the cache that was built from this checkout's guest scripts."""
    images = (root or cache_root()) / "micro-image"
    candidates = sorted(
        (path for path in images.glob("*") if (path / "manifest.json").is_file()),
        key=lambda path: (path / "manifest.json").stat().st_mtime,
        reverse=True,
    )
    for directory in candidates:
        try:
            micro.load_prebuilt(directory)
        except (micro.MicroImageError, OSError, ValueError, KeyError):
            continue  # another checkout's guest scripts, or half a directory
        return Found(directory, f"the one already in the cache, {directory}")
    if candidates:
        return Found(None, f"none of the {len(candidates)} image(s) in {images} was built from this checkout's guest scripts")
    return Found(None, f"none in the cache ({images})")


def from_nix(progress: Callable[[str], None] = lambda _: None, flake: str | None = None) -> Found:
    """The flake's micro image, built by the host's nix."""
    try:
        executable = nix.find_nix()
        old = nix.too_old(executable)
    except nix.NixUnavailable as exc:
        return Found(None, f"no nix to build it: {exc}")
    if old is not None:
        return Found(None, f"nix cannot build it: {old}")
    installable = f"{flake or default_flake()}#{NIX_ATTRIBUTE}"
    progress(f"building the micro image with nix ({installable}; nix's progress follows)")
    try:
        outputs = nix.build([installable], nix=executable, progress=lambda line: progress(f"nix: {line}"))
    except nix.NixError as exc:
        excerpt = "\n".join(exc.excerpt.splitlines()[:REASON_LINES]) or "(no output on stderr)"
        return Found(None, f"nix cannot build {installable} ({exc.kind.name}): {excerpt}")
    return Found(Path(outputs[0]), f"built by nix from {installable}, {outputs[0]}")
