"""The one-round-trip probe: the bash command that prints a machine's NixOS facts, and the
parser that turns its output into a SystemState. No Python in the guest: bash and coreutils
(`readlink -e`, `dirname`, `tail`, `tr`)."""

from __future__ import annotations

import re
import shlex

from harness.nixos.boot import parse_entry
from harness.nixos.state import (
    EFI_VARIABLES,
    SYSTEMD_BOOT_GUID,
    Generation,
    NixosPaths,
    NixosProbeError,
    SystemState,
)

_END_MARKER = "probe-end"
# Without `readlink -e` every fact would silently read as "absent" (busybox's readlink has no
# -e: the fact "reboot pending" would follow from nothing): exit 3, saying so, instead.
COREUTILS_GUARD = (
    "readlink -e / >/dev/null 2>&1 && command -v dirname >/dev/null || "
    '{ echo "needs readlink -e and dirname (coreutils)"; exit 3; }'
)


def probe_script(paths: NixosPaths) -> str:
    """One bash command that prints tab-separated facts; every `readlink -e` may print nothing."""
    q = shlex.quote
    profile = f"{paths.profiles_dir}/{paths.profile_name}"
    efi = " ".join(q(f"{name}-{SYSTEMD_BOOT_GUID}") for name in EFI_VARIABLES)
    # A subshell: `exit`, `shopt` and the functions must not touch a persistent backdoor shell.
    return (
        "( "
        + "\n".join(
            [
                COREUTILS_GUARD,
                "shopt -s nullglob",
                # system_of: the exporter's rule, verbatim in behaviour.
                "ndh_sys() { local v; if v=$(readlink -e -- \"$1/nixos-version\" 2>/dev/null); "
                'then dirname -- "$v"; else readlink -e -- "$1" 2>/dev/null || true; fi; }',
                'ndh_rl() { readlink -e -- "$1" 2>/dev/null || true; }',
                f"for l in {q(paths.profiles_dir)}/{q(paths.profile_name)}-*-link; do "
                '[ -L "$l" ] || continue; s=$(ndh_sys "$l"); '
                'printf "gen\\t%s\\t%s\\t%s\\t%s\\t%s\\n" "${l##*/}" "$(ndh_rl "$l")" "$s" '
                '"$(ndh_rl "$l/kernel")" "$(ndh_rl "$l/initrd")"; done',
                # The test-branch profile's generations: what a test deploy runs.
                f"for l in {q(paths.profiles_dir)}/{q(paths.test_profile_name)}-*-link; do "
                '[ -L "$l" ] || continue; '
                'printf "tgen\\t%s\\t%s\\t%s\\n" "${l##*/}" "$(ndh_rl "$l")" "$(ndh_sys "$l")"; done',
                f"t=$(readlink -- {q(profile)} 2>/dev/null || true); t=${{t##*/}}; "
                f'if [ -n "$t" ] && [ -L {q(paths.profiles_dir)}/"$t" ]; then v=1; else v=0; fi; '
                f'printf "profile\\t%s\\t%s\\t%s\\n" "$t" "$v" "$(ndh_sys {q(profile)})"',
                f'printf "current\\t%s\\t%s\\n" "$(ndh_rl {q(paths.current_system)})" '
                f'"$(ndh_sys {q(paths.current_system)})"',
                f'printf "booted\\t%s\\t%s\\t%s\\t%s\\n" "$(ndh_rl {q(paths.booted_system)})" '
                f'"$(ndh_sys {q(paths.booted_system)})" '
                f'"$(ndh_rl {q(paths.booted_system + "/kernel")})" '
                f'"$(ndh_rl {q(paths.booted_system + "/initrd")})"',
                f"if [ -f {q(paths.loader_conf)} ]; then "
                'while IFS= read -r x || [ -n "$x" ]; do printf "loader\\t%s\\n" "$x"; done < '
                f'{q(paths.loader_conf)}; printf "loader-present\\n"; fi',
                # Each entry: its lines, then the system its init= names (resolved here, where
                # the store is) with that system's kernel and initrd.
                f"for e in {q(paths.boot_entries)}/*.conf; do [ -f \"$e\" ] || continue; "
                'n=${e##*/}; top=; while IFS= read -r x || [ -n "$x" ]; do '
                'printf "entry\\t%s\\t%s\\n" "$n" "$x"; x=${x%$\'\\r\'}; '
                'if [[ $x =~ ^options[[:space:]] ]]; then read -ra ws <<< "$x"; '
                'for w in "${ws[@]}"; do if [[ $w == init=* ]]; then '
                'top=$(dirname -- "${w#init=}"); fi; done; fi; done < "$e"; '
                's=; k=; i=; if [ -n "$top" ]; then s=$(ndh_sys "$top"); fi; '
                'if [ -n "$s" ]; then k=$(ndh_rl "$s/kernel"); i=$(ndh_rl "$s/initrd"); fi; '
                'printf "entry-system\\t%s\\t%s\\t%s\\t%s\\n" "$n" "$s" "$k" "$i"; done',
                f"for f in {efi}; do p={q(paths.efivars)}/\"$f\"; [ -r \"$p\" ] || continue; "
                'printf "efi\\t%s\\t%s\\n" "${f%%-*}" "$(tail -c +5 -- "$p" | tr -d \'\\000\')"; '
                "done",
                f'printf "{_END_MARKER}\\n"',
            ]
        )
        + " )"
    )


def _none_if_empty(value: str) -> str | None:
    return value or None


def _fields(rest: str, count: int) -> list[str]:
    parts = rest.split("\t")
    return (parts + [""] * count)[:count]


def parse_probe_output(node: str, output: str, paths: NixosPaths) -> SystemState:
    lines = output.splitlines()
    if _END_MARKER not in lines:
        raise NixosProbeError(
            f"{node}: the state probe's output is incomplete (no {_END_MARKER!r} line); "
            f"got {output[-300:]!r}. Check the node's shell and serial log."
        )
    link_pattern = re.compile(re.escape(paths.profile_name) + r"-(\d+)-link")
    test_link_pattern = re.compile(re.escape(paths.test_profile_name) + r"-(\d+)-link")
    generations: list[Generation] = []
    test_generations: list[Generation] = []
    profile_link = profile_system = None
    profile_valid = False
    current = current_of = booted = booted_of = booted_kernel = booted_initrd = None
    loader_lines: list[str] = []
    loader_present = False
    entry_lines: dict[str, list[str]] = {}
    entry_systems: dict[str, tuple[str | None, str | None, str | None]] = {}
    efi: dict[str, str] = {}
    for line in lines:
        kind, _, rest = line.partition("\t")
        if kind == "gen":
            name, store, system, kernel, initrd = _fields(rest, 5)
            match = link_pattern.fullmatch(name)
            if match is not None:  # skip e.g. "system-foo-link" from other tools
                generations.append(
                    Generation(
                        int(match[1]),
                        _none_if_empty(store),
                        _none_if_empty(kernel),
                        _none_if_empty(initrd),
                        _none_if_empty(system),
                    )
                )
        elif kind == "tgen":
            name, store, system = _fields(rest, 3)
            match = test_link_pattern.fullmatch(name)
            if match is not None:
                test_generations.append(
                    Generation(int(match[1]), _none_if_empty(store), system=_none_if_empty(system))
                )
        elif kind == "profile":
            target, valid, system = _fields(rest, 3)
            profile_link, profile_valid = _none_if_empty(target), valid == "1"
            profile_system = _none_if_empty(system)
        elif kind == "current":
            current, current_of = (_none_if_empty(f) for f in _fields(rest, 2))
        elif kind == "booted":
            booted, booted_of, booted_kernel, booted_initrd = (
                _none_if_empty(f) for f in _fields(rest, 4)
            )
        elif kind == "loader":
            loader_lines.append(rest)
        elif kind == "loader-present":
            loader_present = True
        elif kind == "entry":
            name, _, text = rest.partition("\t")
            entry_lines.setdefault(name, []).append(text)
        elif kind == "entry-system":
            name, system, kernel, initrd = _fields(rest, 4)
            entry_lines.setdefault(name, [])
            entry_systems[name] = tuple(_none_if_empty(f) for f in (system, kernel, initrd))  # type: ignore[assignment]
        elif kind == "efi":
            name, value = _fields(rest, 2)
            efi[name] = value
    entries = tuple(
        parse_entry(name, "\n".join(text), *entry_systems.get(name, (None, None, None)))
        for name, text in sorted(entry_lines.items())
    )
    return SystemState(
        node=node,
        generations=tuple(sorted(generations, key=lambda g: g.number)),
        profile_link=profile_link,
        profile_link_valid=profile_valid,
        profile_system=profile_system,
        current_system=current,
        booted_system=booted,
        booted_kernel=booted_kernel,
        booted_initrd=booted_initrd,
        loader_conf="\n".join(loader_lines) + "\n" if loader_present else None,
        paths=paths,
        current_system_of=current_of,
        booted_system_of=booted_of,
        boot_entries=entries,
        efi_variables=efi,
        test_generations=tuple(sorted(test_generations, key=lambda g: g.number)),
    )

