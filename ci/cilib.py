"""Shared helpers for the ci/ scripts (determine-hosts, deploy-plan, needs-reboot).

Stdlib only: the scripts run on a bare CI runner before any virtualenv exists.
Not a package on purpose (the Python package of this repository is `harness`).
"""

import json
import os
import re
import subprocess
import sys

# Host names end up in flake references (".#Niko.test"), attribute paths and
# messages. Only plain names are accepted: no dots (they would split the flake
# fragment), no slashes, quotes, spaces, shell metacharacters or a leading "-".
HOST_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")

# The host nix may be older than flakes-by-default (Debian's 2.8 is); enabling
# the features on the command line is harmless where they are already enabled.
NIX_FEATURES = ["--extra-experimental-features", "nix-command flakes"]

# Every flake command in CI uses the committed flake.lock as it is (ci/require-lock checks it
# exists): nix refuses to run rather than lock or update an input by itself.
LOCK_FLAGS = ["--no-update-lock-file"]

# How many lines of nix's stderr an error message repeats.
NIX_STDERR_LINES = 15


class CiError(Exception):
    """A failure the user must act on; main() prints it and exits 1."""


def host_name_problem(name):
    """Why `name` is not an acceptable host name, or None if it is fine."""
    if not isinstance(name, str):
        return f"host name must be a string, got {type(name).__name__}"
    if name == "":
        return "host name is empty"
    if HOST_NAME_RE.fullmatch(name) is None:
        return (
            f"{name!r} is not a valid host name (allowed: letters, digits, '_' and '-', "
            "starting with a letter or digit, at most 63 characters)"
        )
    return None


def parse_host_list(text, source):
    """Parse and validate a JSON list of host names (output of `nix eval --json`)."""
    try:
        hosts = json.loads(text)
    except json.JSONDecodeError as err:
        raise CiError(f"{source}: not valid JSON ({err}); expected a list such as [\"Niko\"]")
    if not isinstance(hosts, list):
        raise CiError(f"{source}: expected a JSON list of host names, got {type(hosts).__name__}")
    for name in hosts:
        problem = host_name_problem(name)
        if problem:
            raise CiError(f"{source}: {problem}")
    if len(set(hosts)) != len(hosts):
        raise CiError(f"{source}: host list has duplicates: {hosts}")
    return sorted(hosts)


def first_lines(text, count=NIX_STDERR_LINES):
    lines = text.strip().splitlines()
    shown = "\n".join("  " + line for line in lines[:count])
    if len(lines) > count:
        shown += f"\n  ... ({len(lines) - count} more lines)"
    return shown


def run_nix(args, what, env=None):
    """Run `nix <args>` and return stdout; nix failing raises CiError with its stderr."""
    argv = ["nix", *NIX_FEATURES, *args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    except FileNotFoundError:
        raise CiError(f"{what}: the `nix` command was not found on PATH; run this on a machine with Nix")
    if proc.returncode != 0:
        detail = first_lines(proc.stderr) or "  (nix printed nothing on stderr)"
        raise CiError(
            f"{what}: `nix {' '.join(args)}` failed with exit status {proc.returncode}:\n{detail}"
        )
    return proc.stdout


def nix_eval_json(flake, attr, apply, what):
    out = run_nix(["eval", *LOCK_FLAGS, "--json", f"{flake}#{attr}", "--apply", apply], what)
    try:
        return json.loads(out)
    except json.JSONDecodeError as err:
        raise CiError(f"{what}: nix printed something that is not JSON ({err}): {out[:200]!r}")


def eval_hosts(flake, deployable_only=True):
    """Host names of the flake: deploy.nodes (deployable) or nixosConfigurations (all)."""
    attr = "deploy.nodes" if deployable_only else "nixosConfigurations"
    out = run_nix(
        ["eval", *LOCK_FLAGS, "--json", f"{flake}#{attr}", "--apply", "builtins.attrNames"],
        f"listing the hosts of {flake}#{attr}",
    )
    return parse_host_list(out, f"nix eval {flake}#{attr}")


def read_host_list(hosts_json=None, hosts_file=None, flake=".", deployable_only=True):
    """The host list from --hosts-json, --hosts-file (or '-' for stdin), else from nix."""
    if hosts_json is not None:
        return parse_host_list(hosts_json, "--hosts-json")
    if hosts_file is not None:
        if hosts_file == "-":
            return parse_host_list(sys.stdin.read(), "standard input")
        try:
            with open(hosts_file, encoding="utf-8") as handle:
                return parse_host_list(handle.read(), hosts_file)
        except OSError as err:
            raise CiError(f"cannot read host list {hosts_file}: {err.strerror}")
    return eval_hosts(flake, deployable_only)


def parse_flag(value, option):
    """Workflow booleans arrive as strings: 'true', 'false' or '' (input not set)."""
    normal = (value or "").strip().lower()
    if normal in ("", "false"):
        return False
    if normal == "true":
        return True
    raise CiError(f"{option} must be 'true', 'false' or empty, got {value!r}")


def write_github_output(pairs):
    """Append name=value lines to the file named by $GITHUB_OUTPUT (Actions step outputs)."""
    path = os.environ.get("GITHUB_OUTPUT")
    if not path:
        raise CiError("--github-output was given but $GITHUB_OUTPUT is not set (run inside a workflow step)")
    for name, value in pairs.items():
        if "\n" in str(value) or "\r" in str(value):
            raise CiError(f"step output {name} would span several lines; refusing to write it")
    with open(path, "a", encoding="utf-8") as handle:
        for name, value in pairs.items():
            handle.write(f"{name}={value}\n")


def run_main(main):
    """Call main(); turn CiError into 'error: ...' on stderr and exit status 1."""
    try:
        sys.exit(main())
    except CiError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
