"""Binary-cache helpers: signing keys, signing, `nix copy` to a cache, signatures, pull evidence.

Used by the cache scenario on VMs (through a machine's shell) and by host tests (through a
local shell). Commands run with `2>&1` so nix's messages come back in stdout: the backdoor
shell sends stderr to the serial log, where a test cannot read it.

A pull is proved by the cache key's signature on the target's copy of a path (`nix path-info
--json --sigs`) and by nix's "copying path '<path>' from '<cache url>'" line.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from harness.vm.guest import ShellMachine

NIX = "nix --extra-experimental-features nix-command"
STORE_DIR = "/nix/store"


class CacheError(RuntimeError):
    """A cache command failed; says which, on which node, with nix's output."""


@dataclass(frozen=True)
class SigningKey:
    name: str  # the part before ':' in keys and signatures
    secret_key_file: str  # on the machine that generated it
    public_key: str  # "name:base64", as trusted-public-keys wants it


@dataclass(frozen=True)
class CopiedPath:
    path: str
    source: str


@dataclass(frozen=True)
class RealiseResult:
    """The outcome of asking a store to substitute paths, with nix's output kept."""

    exit_code: int
    output: str
    copied: tuple[CopiedPath, ...]
    refused_unsigned: tuple[CopiedPath, ...]

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def _run(machine: ShellMachine, command: str, what: str, timeout: float | None) -> str:
    status, output = machine.execute(f"{command} 2>&1", timeout=timeout)
    if status != 0:
        raise CacheError(
            f"{what} failed on {machine.name} (exit {status}): `{command}`\n"
            f"{output.strip()[-1500:]}"
        )
    return output


def _options(options: Mapping[str, str] | None) -> str:
    return " ".join(
        f"--option {shlex.quote(name)} {shlex.quote(value)}"
        for name, value in (options or {}).items()
    )


def generate_signing_key(
    machine: ShellMachine,
    name: str,
    secret_key_file: str,
    public_key_file: str,
    timeout: float | None = 60,
) -> SigningKey:
    """`nix-store --generate-binary-cache-key`; returns the key with its public half."""
    q = shlex.quote
    _run(
        machine,
        "nix-store --generate-binary-cache-key "
        f"{q(name)} {q(secret_key_file)} {q(public_key_file)}",
        f"generating signing key {name!r}",
        timeout,
    )
    public = _run(machine, f"cat {q(public_key_file)}", "reading the public key", timeout).strip()
    if not public.startswith(name + ":"):
        raise CacheError(f"{machine.name}: public key file {public_key_file} holds {public!r}")
    return SigningKey(name=name, secret_key_file=secret_key_file, public_key=public)


def sign_paths(
    machine: ShellMachine,
    key: SigningKey,
    paths: Sequence[str],
    recursive: bool = True,
    store: str | None = None,
    timeout: float | None = 300,
) -> None:
    """Add the key's signature to paths (and their closure) in the machine's store."""
    flags = ["-k", key.secret_key_file] + (["-r"] if recursive else [])
    flags += ["--store", store] if store else []
    _run(
        machine,
        f"{NIX} store sign {shlex.join(flags)} {shlex.join(paths)}",
        f"signing {len(paths)} path(s) with {key.name}",
        timeout,
    )


def copy_to_cache(
    machine: ShellMachine,
    cache_url: str,
    paths: Sequence[str],
    options: Mapping[str, str] | None = None,
    timeout: float | None = 600,
    *,
    unsigned: bool = False,
    ssh_options: Sequence[str] = (),
) -> str:
    """`nix copy --to <cache_url> <paths>` (closure included); returns nix's output.

    unsigned: pass `--no-check-sigs`, for paths built without a signature pushed to a trusted
    user (nix copy checks signatures on the receiving side otherwise, for a trusted user too;
    tests/deploy/test_nix_copy_signatures.py). ssh_options: NIX_SSHOPTS for an ssh store."""
    sshopts = f"NIX_SSHOPTS={shlex.quote(shlex.join(ssh_options))} " if ssh_options else ""
    flags = " --no-check-sigs" if unsigned else ""
    return _run(
        machine,
        f"{sshopts}{NIX} copy{flags} {_options(options)} --to {shlex.quote(cache_url)} {shlex.join(paths)}",
        f"copying {len(paths)} path(s) to {cache_url}",
        timeout,
    )


def closure(machine: ShellMachine, path: str, timeout: float | None = 120) -> list[str]:
    """Every path `path` needs (itself included), from the machine's store."""
    return _run(machine, f"nix-store -qR {shlex.quote(path)}", f"the closure of {path}", timeout).split()


def invalid_paths(machine: ShellMachine, paths: Sequence[str], timeout: float | None = 120) -> set[str]:
    """The paths the machine's store does not hold (one nix-store for all of them)."""
    return set(_run(machine, f"nix-store --check-validity --print-invalid {shlex.join(paths)}",
                    f"checking {len(paths)} path(s)", timeout).split())


def path_signatures(
    machine: ShellMachine,
    paths: Sequence[str],
    store: str | None = None,
    timeout: float | None = 60,
) -> dict[str, tuple[str, ...]]:
    """Signatures per path from `nix path-info --json --sigs` (paths must be valid there)."""
    store_flag = f"--store {shlex.quote(store)} " if store else ""
    status, output = machine.execute(
        f"{NIX} path-info --json --sigs {store_flag}{shlex.join(paths)}", timeout=timeout
    )
    if status != 0:
        raise CacheError(
            f"{machine.name}: `nix path-info` failed (exit {status}) for {list(paths)}: are the "
            "paths valid in that store? (nix's message is in the node's serial log)"
        )
    return parse_path_info_signatures(output)


def parse_path_info_signatures(path_info_json: str) -> dict[str, tuple[str, ...]]:
    data = json.loads(path_info_json)
    # Nix 2.8 prints a list of objects with "path"; newer Nix an object keyed by path (NixOS/nix
    # commit "Make `nix path-info --json` return an object not array"), and the newest JSON
    # formats may drop the store directory from store paths.
    entries = data.items() if isinstance(data, dict) else ((e["path"], e) for e in data)
    return {
        (path if path.startswith("/") else f"{STORE_DIR}/{path}"): tuple(
            (info or {}).get("signatures", ())
        )
        for path, info in entries
    }


def key_name(key: SigningKey | str) -> str:
    """The key name of a SigningKey, a public key "name:base64", or a bare name."""
    text = key.name if isinstance(key, SigningKey) else key
    return text.split(":", 1)[0]


def signed_by(signatures: Iterable[str], key: SigningKey | str) -> bool:
    """Whether one of the signatures carries the key's name ("name:sig")."""
    name = key_name(key)
    return any(sig.split(":", 1)[0] == name for sig in signatures)


def unsigned_paths(signatures: Mapping[str, Iterable[str]], key: SigningKey | str) -> list[str]:
    """The paths that carry no signature by `key` (empty: all are signed)."""
    return [path for path, sigs in signatures.items() if not signed_by(sigs, key)]


# nix prints "copying path '<path>' from '<substituter>'..." when it substitutes (seen
# verbatim from Nix 2.8 on this host, tests/deploy/test_deploy_cache.py).
_COPYING_FROM = re.compile(r"copying path '(?P<path>/[^']+)' from '(?P<source>[^']+)'")
# Nix 2.8: "warning: the substitute for '<path>' from '<url>' is not signed by any of the keys
# in 'trusted-public-keys'"; newer Nix: "ignoring substitute for '<path>' from '<url>', as
# it's not signed by any of the keys in 'trusted-public-keys'".
_NOT_SIGNED = re.compile(
    r"substitute for '(?P<path>/[^']+)' from '(?P<source>[^']+)',? (?:as it's|is) not signed "
    r"by any of the keys in 'trusted-public-keys'"
)


def parse_copied_paths(output: str, source_prefix: str | None = None) -> list[CopiedPath]:
    """Paths nix said it substituted, optionally only from sources starting with a prefix."""
    return [
        CopiedPath(m["path"], m["source"])
        for m in _COPYING_FROM.finditer(output)
        if source_prefix is None or m["source"].startswith(source_prefix)
    ]


def parse_unsigned_refusals(output: str) -> list[CopiedPath]:
    """Substitutes nix refused because no trusted key signed them."""
    return [CopiedPath(m["path"], m["source"]) for m in _NOT_SIGNED.finditer(output)]


def realise_from_substituter(
    machine: ShellMachine,
    paths: Sequence[str],
    substituter: str,
    trusted_public_keys: Sequence[str],
    store: str | None = None,
    timeout: float | None = 600,
) -> RealiseResult:
    """`nix-store --realise` the paths with only `substituter`, trusting exactly these keys.

    Does not raise when nix refuses: the refusal is the point of some tests. Read `.ok`.
    """
    options = {
        "substituters": substituter,
        "trusted-public-keys": " ".join(trusted_public_keys),
        "require-sigs": "true",
        "narinfo-cache-negative-ttl": "0",
        "narinfo-cache-positive-ttl": "0",
    }
    store_flag = f"--store {shlex.quote(store)} " if store else ""
    status, output = machine.execute(
        f"nix-store {store_flag}--realise {_options(options)} {shlex.join(paths)} 2>&1",
        timeout=timeout,
    )
    return RealiseResult(
        exit_code=status,
        output=output,
        copied=tuple(parse_copied_paths(output)),
        refused_unsigned=tuple(parse_unsigned_refusals(output)),
    )
