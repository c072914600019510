"""What `deploy-harness` exits with, and its own errors."""
from __future__ import annotations

import re

EXIT_ERROR = 1  # the harness could not do what was asked (message on stderr)
EXIT_RUN_ERROR = 255  # the same for `run`, whose 1 belongs to the command (as ssh does)
EXIT_TIMEOUT = 124  # `run --timeout` ran out (as timeout(1) does)
EXIT_INTERRUPTED = 130
SNAPSHOT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
RUN_USAGE = "deploy-harness run NODE [--fleet NAME] [--timeout SECONDS] [--] CMD..."


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code
