"""Find processes by a text in their command line: how the self-tests prove nothing is left."""
from __future__ import annotations

import os

import psutil


def processes_mentioning(text: str) -> list[int]:
    """Pids of live (not zombie) processes, other than this one, whose command line holds `text`."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        argv = process.info["cmdline"] or []
        if process.pid != os.getpid() and process.info["status"] != psutil.STATUS_ZOMBIE and text in " ".join(argv):
            found.append(process.pid)
    return found
