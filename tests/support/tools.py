"""Skips that name what is missing and where it comes from."""
from __future__ import annotations

import shutil

import pytest


def require(*tools: str, package: str | None = None) -> None:
    """Skip unless every tool is on PATH; the reason names the tool and, when given, the Debian
    package that provides it (ci/bootstrap installs it)."""
    for tool in tools:
        if shutil.which(tool) is None:
            where = f" (Debian package {package}; ci/bootstrap installs it)" if package else ""
            pytest.skip(f"{tool} is not installed on this host{where}")
