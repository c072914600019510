"""pytest-xdist and fleets: one fleet per run, not one per worker. A fleet is booted by the
worker that runs its first test, so every test that asks for a fleet joins the xdist group of
its FleetSpec, and `-n N` without `--dist` runs with `--dist loadgroup` (xdist's own default
is `load`): all tests of one fleet go to one worker, tests without a fleet spread over the
others (docs/snapshots.md, "Parallel runs"). Loaded by harness.pytest_plugin."""
from __future__ import annotations

import pytest

from .specs import FleetSpec

GROUP_PREFIX = "ndh-fleet-"
_WORKER_FLAG = "ndh_loadgroup"  # workerinput: the controller schedules by group


def group_of(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("fleet")
    if marker is None or not marker.args or not isinstance(marker.args[0], FleetSpec):
        return None
    return GROUP_PREFIX + marker.args[0].name


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the groups into the test ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        group = group_of(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.hookimpl(hookwrapper=True)  # before xdist turns `-n N` without --dist into --dist load
def pytest_cmdline_main(config: pytest.Config):
    option = config.option
    if getattr(option, "numprocesses", None) and getattr(option, "dist", None) == "no" \
            and not getattr(option, "distload", False):
        option.dist = "loadgroup"  # an explicit --dist is the user's choice
    yield


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    # A worker decides from its own command line (no --dist there) whether it groups.
    if workerinput is not None and workerinput.get(_WORKER_FLAG):
        config.option.loadgroup = True


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    node.workerinput[_WORKER_FLAG] = node.config.getoption("dist") == "loadgroup"


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
