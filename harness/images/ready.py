"""`python -m harness.images.ready [--check]`: the micro image for ci/bootstrap. Builds it into
the user's cache (or finds it there, or at $NDH_MICRO_IMAGE) and says where; `--check` builds
and downloads nothing and only says whether it is built, or could be built here. Whatever is
missing is one line on stderr and exit status 1, never a traceback."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from . import debian, host_tools, micro

FAILURES = (micro.MicroImageError, debian.DebianPackageError, OSError, subprocess.CalledProcessError)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.images.ready",
        description="Build (or find) the micro image the VM tests boot.",
    )
    parser.add_argument("--check", action="store_true",
                        help="build and download nothing: say whether the image is built, or what building it lacks")
    args = parser.parse_args(argv)
    try:
        if args.check:
            return _check()
        built = micro.ensure_micro_image(lambda text: print(f"micro image: {text}", flush=True))
    except FAILURES as exc:
        print(f"micro image: cannot build it: {exc}", file=sys.stderr)
        return 1
    print(f"micro image: ready in {built.directory}")
    return 0


def _check() -> int:
    prebuilt = os.environ.get(micro.PREBUILT_ENV)
    if prebuilt:
        micro.load_prebuilt(Path(prebuilt))
        print(f"micro image: {micro.PREBUILT_ENV}={prebuilt} is usable")
        return 0
    missing = host_tools.missing(micro.DEBIAN_TOOLS + micro.BUILD_TOOLS)
    if missing:
        print(f"micro image: cannot be built here: {', '.join(missing)} not found (looked on PATH and in "
              f"{', '.join(host_tools.SBIN_DIRS)})", file=sys.stderr)
        return 1
    directory = micro.image_dir(micro.image_inputs())
    if (directory / "manifest.json").exists():
        print(f"micro image: built in {directory}")
        return 0
    tools = ", ".join(f"{tool} {host_tools.find(tool)}" for tool in micro.BUILD_TOOLS if not tool.startswith("/"))
    print(f"micro image: not built yet; building it needs nothing more ({tools}); "
          f"ci/bootstrap builds it into {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
