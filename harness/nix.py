"""The Nix command line, seen from the host: build, eval to JSON, errors turned into advice.

Layer 3 of the harness (docs/architecture.md). Everything here runs `nix` as a host subprocess; nothing
knows about VMs. Failures become `NixError` with the command, the exit code, the first lines of
nix's own error and what to do about it; a missing `nix` becomes `NixUnavailable`.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

EXPERIMENTAL_FEATURES = "nix-command flakes"
STDERR_EXCERPT_LINES = 8


class NixUnavailable(RuntimeError):
    """No `nix` executable: callers skip NixOS work with this message."""


@dataclass(frozen=True)
class FailureKind:
    """What a nix failure means and what the user can do about it."""

    name: str
    hint: str


OFFLINE = FailureKind(
    "offline",
    "nix could not download something (no network or no reachable substituter). Build on a "
    "machine that reaches a binary cache, or pre-populate the store (nix copy) and retry.",
)
MISSING_FEATURE = FailureKind(
    "missing-system-feature",
    "a derivation needs a system feature this machine does not offer (NixOS VM tests need "
    "'kvm' and 'nixos-test'). Run on a machine with working KVM and those features in "
    "nix.conf `system-features`, or use a remote builder that has them.",
)
NO_DAEMON = FailureKind(
    "no-daemon",
    "nix could not reach its daemon: start it (`systemctl start nix-daemon`) or run as a user "
    "who may use the store directly.",
)
MISSING_SEARCH_PATH = FailureKind(
    "missing-search-path",
    "the expression imports a search path entry (like <nixpkgs>) that is not set. Use the "
    "flake's pinned inputs, or set NIX_PATH / pass -I.",
)
EXPERIMENTAL_DISABLED = FailureKind(
    "experimental-feature-disabled",
    "this nix needs experimental features enabled; the harness passes "
    f"--extra-experimental-features '{EXPERIMENTAL_FEATURES}', so the nix is probably too old "
    "or restricted by its configuration.",
)
EVALUATION = FailureKind(
    "evaluation",
    "the Nix expression failed to evaluate: fix the code at the position nix shows (add "
    "--show-trace to the command to see how it got there).",
)
BUILD = FailureKind(
    "build",
    "a builder failed: read the build log (`nix log <drv>`) for the derivation nix names.",
)
TIMEOUT = FailureKind(
    "timeout",
    "nix did not finish in time: raise the timeout, or check for a hung download or build.",
)
UNKNOWN = FailureKind("unknown", "read nix's message above.")

# Most specific first: an offline build also ends with "builder ... failed", and a missing
# feature can be reported while a substituter is also unreachable.
_CLASSIFIERS: tuple[tuple[FailureKind, re.Pattern[str]], ...] = (
    # Nix 2.8 (checked on this host): "error: a 'x86_64-linux' with features {kvm} is required
    # to build '<drv>', but I am a 'x86_64-linux' with features {benchmark}".
    # Newer Nix (and the remote-build hook): "required system or feature not available".
    (
        MISSING_FEATURE,
        re.compile(
            r"with features \{[^}]*\} is required to build"
            r"|required system or feature not available",
        ),
    ),
    (
        EXPERIMENTAL_DISABLED,
        re.compile(r"experimental Nix feature '[^']+' is disabled"),
    ),
    (NO_DAEMON, re.compile(r"cannot connect to socket at '[^']*daemon-socket")),
    (
        OFFLINE,
        re.compile(
            r"unable to download|cannot connect to|Couldn't resolve host|Could not resolve host"
            r"|Couldn't connect to server|Connection refused|Network is unreachable"
            r"|there is no substituter that can build it",
        ),
    ),
    (MISSING_SEARCH_PATH, re.compile(r"was not found in the Nix search path")),
    (
        BUILD,
        re.compile(r"builder for '[^']+' failed|build of '[^']+' failed|cannot build '"),
    ),
    (
        EVALUATION,
        re.compile(
            r"^\s+at .+:\d+:\d+:\s*$|undefined variable|syntax error|attribute '[^']+' missing"
            r"|evaluation aborted|infinite recursion|assertion .* failed|cannot coerce"
            r"|value is .* while a .* was expected|called without required argument"
            r"|cannot convert .* to JSON|while evaluating",
            re.MULTILINE,
        ),
    ),
)


def classify_failure(stderr: str) -> FailureKind:
    """The most specific explanation for a nix failure, from nix's stderr."""
    for kind, pattern in _CLASSIFIERS:
        if pattern.search(stderr):
            return kind
    return UNKNOWN


def stderr_excerpt(stderr: str, max_lines: int = STDERR_EXCERPT_LINES) -> str:
    """nix's first lines that matter: from the first `error:` line, skipping retry warnings."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if line.startswith("error:"):
            return "\n".join(lines[index : index + max_lines])
    return "\n".join(lines[:max_lines])


class NixError(RuntimeError):
    """A nix command failed; the message says which, how, and what to do."""

    def __init__(self, command: Sequence[str], exit_code: int | None, stderr: str) -> None:
        self.command = list(command)
        self.exit_code = exit_code
        self.stderr = stderr
        self.kind = TIMEOUT if exit_code is None else classify_failure(stderr)
        self.excerpt = stderr_excerpt(stderr)
        status = "timed out" if exit_code is None else f"exited with {exit_code}"
        super().__init__(
            f"nix failed ({self.kind.name}): `{shlex.join(self.command)}` {status}\n"
            f"{self.excerpt or '(no output on stderr)'}\n"
            f"What to do: {self.kind.hint}"
        )


def find_nix(path: str | None = None) -> str:
    """The `nix` executable on PATH (or on `path`), or NixUnavailable saying so."""
    found = shutil.which("nix", path=path)
    if found is None:
        raise NixUnavailable(
            "nix is not installed or not on PATH: NixOS nodes cannot be built here. Install "
            "Nix (https://nixos.org/download) or run on a machine that has it."
        )
    return found


# Current nixpkgs refuses older Nix (nixpkgs lib/minver.nix: "2.18").
MIN_VERSION = (2, 18)
HOW_TO_UPGRADE = (
    "install Nix 2.18 or newer: on NixOS set `nix.package = pkgs.nixVersions.latest` (or use a "
    "current NixOS release), elsewhere the installer from https://nixos.org/download; Debian "
    "12's nix-bin (2.8) is too old"
)


def version(nix: str) -> tuple[tuple[int, ...], str]:
    """`nix --version` as numbers and as printed ("nix (Nix) 2.24.10", "nix (Lix, like Nix)
    2.91.1": the last dotted number is the version)."""
    try:
        printed = subprocess.run(
            [nix, "--version"], capture_output=True, text=True, timeout=60, check=False
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NixUnavailable(f"`{nix} --version` failed: {exc}") from None
    numbers = re.findall(r"\b(\d+(?:\.\d+)+)\b", printed)
    if not numbers:
        raise NixUnavailable(f"`{nix} --version` printed no version: {printed[:100]!r}")
    return tuple(int(part) for part in numbers[-1].split(".")), numbers[-1]


def too_old(nix: str) -> str | None:
    """Why this nix cannot evaluate current nixpkgs, in one line; None when it is new enough."""
    found, printed = version(nix)
    if found[:2] >= MIN_VERSION:
        return None
    minimum = ".".join(map(str, MIN_VERSION))
    return f"nix {printed} ({nix}) is older than {minimum}, which current nixpkgs needs: {HOW_TO_UPGRADE}"


@functools.cache
def _supports_print_out_paths(nix: str) -> bool:
    # Feature test instead of a version table: `--print-out-paths` arrived in Nix 2.9
    # (release notes rl-2.9); Debian's 2.8 rejects it ("unrecognised flag").
    help_text = subprocess.run(
        [nix, "--extra-experimental-features", EXPERIMENTAL_FEATURES, "build", "--help"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return "--print-out-paths" in help_text


# Options for a nix command that must reach no network: no substituter, no flake registry.
OFFLINE_OPTIONS: Mapping[str, str] = {"substituters": "", "flake-registry": ""}


def option_args(options: Mapping[str, str] | None) -> list[str]:
    """`--option NAME VALUE` for each, for the nix commands that take no `options=`."""
    args: list[str] = []
    for name, value in (options or {}).items():
        args += ["--option", name, value]
    return args


def _source_args(
    installables: Sequence[str],
    file: str | None,
    expr: str | None,
    args: Mapping[str, str] | None,
    argstrs: Mapping[str, str] | None,
) -> list[str]:
    if file is not None and expr is not None:
        raise ValueError("give either file= or expr=, not both")
    source: list[str] = []
    if file is not None:
        source += ["--file", file]
    if expr is not None:
        source += ["--expr", expr]
    for name, value in (args or {}).items():
        source += ["--arg", name, value]
    for name, value in (argstrs or {}).items():
        source += ["--argstr", name, value]
    return source + list(installables)


def run_nix(
    arguments: Sequence[str],
    *,
    nix: str | None = None,
    timeout: float | None = None,
    cwd: str | None = None,
    progress: Callable[[str], None] | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run `nix <arguments>` with the experimental features we need; return stdout. With
    `progress`, each line nix prints on stderr (its build log) goes there as it comes. `env`
    adds variables to this process's environment for nix alone (NIX_SSHOPTS, an impure getEnv)."""
    executable = nix or find_nix()
    command = [executable, "--extra-experimental-features", EXPERIMENTAL_FEATURES, *arguments]
    environment = None if env is None else {**os.environ, **env}
    if progress is not None:
        return _run_streaming(command, timeout, cwd, progress, environment)
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False, env=environment
        )
    except subprocess.TimeoutExpired as expired:
        partial = expired.stderr or ""
        if isinstance(partial, bytes):
            partial = partial.decode(errors="replace")
        raise NixError(command, None, partial) from None
    if completed.returncode != 0:
        # Only trust stdout on success: `nix eval --json` prints partial JSON before failing.
        raise NixError(command, completed.returncode, completed.stderr)
    return completed.stdout


def _run_streaming(
    command: list[str], timeout: float | None, cwd: str | None, progress: Callable[[str], None],
    env: Mapping[str, str] | None,
) -> str:
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env
    )
    out: list[str] = []
    err: list[str] = []

    def pump_stderr() -> None:
        for line in proc.stderr:
            err.append(line)
            progress(line.rstrip("\n"))

    readers = [
        threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True),
        threading.Thread(target=pump_stderr, daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        for reader in readers:
            reader.join(5)
        raise NixError(command, None, "".join(err)) from None
    for reader in readers:
        reader.join()
    if proc.returncode != 0:
        raise NixError(command, proc.returncode, "".join(err))
    return "".join(out)


def build(
    installables: Sequence[str] = (),
    *,
    file: str | None = None,
    expr: str | None = None,
    args: Mapping[str, str] | None = None,
    argstrs: Mapping[str, str] | None = None,
    options: Mapping[str, str] | None = None,
    extra_args: Iterable[str] = (),
    nix: str | None = None,
    timeout: float | None = None,
    cwd: str | None = None,
    progress: Callable[[str], None] | None = None,
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """`nix build --no-link`; returns the output store paths in nix's order. With `progress`,
    nix's stderr streams there line by line: what it builds and downloads, as it happens."""
    executable = nix or find_nix()
    source = _source_args(installables, file, expr, args, argstrs)
    common = ["build", "--no-link", *source, *option_args(options), *extra_args]
    if _supports_print_out_paths(executable):
        out = run_nix([*common, "--print-out-paths"], nix=executable, timeout=timeout, cwd=cwd, progress=progress,
                      env=env)
        return [line for line in out.splitlines() if line.strip()]
    out = run_nix([*common, "--json"], nix=executable, timeout=timeout, cwd=cwd, progress=progress, env=env)
    # --json (Nix 2.4+): [{"drvPath": ..., "outputs": {"out": "/nix/store/..."}}, ...]
    return [path for result in json.loads(out) for path in result["outputs"].values()]


def eval_json(
    installable: str | None = None,
    *,
    file: str | None = None,
    expr: str | None = None,
    apply: str | None = None,
    args: Mapping[str, str] | None = None,
    argstrs: Mapping[str, str] | None = None,
    impure: bool = False,
    options: Mapping[str, str] | None = None,
    nix: str | None = None,
    timeout: float | None = None,
    cwd: str | None = None,
) -> Any:
    """`nix eval --json`, decoded. With flakes enabled `--expr` is pure unless impure=True."""
    source = _source_args([installable] if installable else [], file, expr, args, argstrs)
    arguments = ["eval", "--json", *source, *option_args(options)]
    if apply is not None:
        arguments += ["--apply", apply]
    if impure:
        arguments.append("--impure")
    return json.loads(run_nix(arguments, nix=nix, timeout=timeout, cwd=cwd))
