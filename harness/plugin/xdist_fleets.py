"""pytest-xdist and fleets: one fleet per run, not one per worker. A fleet is booted by the
worker that runs its first test, so every test that asks for a fleet joins the xdist group of
its FleetSpec, and `-n N` without `--dist` runs with `--dist loadgroup` (xdist's own default
is `load`): all tests of one fleet go to one worker, tests without a fleet spread over the
others (docs/snapshots.md, "Parallel runs"). Loaded by harness.plugin.

xdist passes groups to its scheduler as a suffix of the test ids, which pytest 9.2 no longer
lets a plugin change (pytest-xdist issue 1386: loadgroup silently stops grouping). So each
worker also writes the groups of its tests to a file in a directory the controller made, and
the controller schedules with xdist's loadgroup scheduler reading the groups from there (and
from the suffix, where xdist still adds one)."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from ..specs import FleetSpec

GROUP_PREFIX = "ndh-fleet-"
_LOADGROUP = "ndh_loadgroup"  # workerinput: the controller schedules by group
_GROUPS_DIR = "ndh_groups_dir"  # workerinput: where a worker writes its tests' groups
_GROUPS_KEY = pytest.StashKey[str]()


def group_of(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("fleet")
    if marker is None or not marker.args or not isinstance(marker.args[0], FleetSpec):
        return None
    return GROUP_PREFIX + marker.args[0].name


def _xdist_groups(item: pytest.Item) -> str | None:
    """The group as xdist names it: every xdist_group mark's name, sorted, joined by `_`."""
    names = {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}
    return "_".join(sorted(names)) or None


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        group = group_of(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
    workerinput = getattr(config, "workerinput", None)
    if workerinput and workerinput.get(_GROUPS_DIR):
        groups = {item.nodeid: group for item in items if (group := _xdist_groups(item))}
        target = Path(workerinput[_GROUPS_DIR]) / f"{workerinput['workerid']}.json"
        temporary = target.with_suffix(".tmp")
        temporary.write_text(json.dumps(groups))
        temporary.replace(target)  # complete before the worker reports its collection


@pytest.hookimpl(hookwrapper=True)  # before xdist turns `-n N` without --dist into --dist load
def pytest_cmdline_main(config: pytest.Config):
    option = config.option
    if getattr(option, "numprocesses", None) and getattr(option, "dist", None) == "no" \
            and not getattr(option, "distload", False):
        option.dist = "loadgroup"  # an explicit --dist is the user's choice
    yield


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        # A worker decides from its own command line (no --dist there) whether it groups.
        if workerinput.get(_LOADGROUP):
            config.option.loadgroup = True
        return
    if getattr(config.option, "dist", "no") == "loadgroup" and not config.getoption("collectonly"):
        config.stash[_GROUPS_KEY] = tempfile.mkdtemp(prefix="ndh-xdist-groups-")


def pytest_unconfigure(config: pytest.Config) -> None:
    directory = config.stash.get(_GROUPS_KEY, None)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    node.workerinput[_LOADGROUP] = node.config.getoption("dist") == "loadgroup"
    directory = node.config.stash.get(_GROUPS_KEY, None)
    if directory is not None:
        node.workerinput[_GROUPS_DIR] = directory


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    directory = config.stash.get(_GROUPS_KEY, None)
    if directory is None:
        return None
    from xdist.scheduler import LoadGroupScheduling

    class FleetGroupScheduling(LoadGroupScheduling):
        """xdist's loadgroup scheduler, with the groups the workers wrote."""

        _groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self._groups is None:  # first asked once every worker reported its collection
                self._groups = {}
                for path in sorted(Path(directory).glob("*.json")):
                    self._groups.update(json.loads(path.read_text()))
            return self._groups.get(nodeid) or super()._split_scope(nodeid)

    return FleetGroupScheduling(config, log)


def pytest_report_header(config: pytest.Config) -> str | None:
    dist = getattr(config.option, "dist", "no")
    if hasattr(config, "workerinput") or dist == "no":
        return None
    if dist == "loadgroup":
        return "vm fleets: one per run; the tests of one fleet run in one xdist worker (--dist loadgroup)"
    return (
        f"vm fleets: --dist {dist} may boot a fleet in every worker that runs one of its tests; "
        "without --dist, -n runs with --dist loadgroup and boots each fleet once"
    )
