"""pytest plugin: fleets of VMs as fixtures, booted once and restored from a snapshot for every
test; options --vm-accel, --keep-vms, --vm-artifacts; serial logs and transcripts of failed
tests saved and named in the report. Each xdist worker has its own fleets, sockets and switches.

    micro_pair = FleetSpec("pair", {"alpha": NodeSpec(), "beta": NodeSpec()})

    @pytest.mark.fleet(micro_pair)
    def test_ping(fleet):
        fleet["alpha"].succeed("ping -c1 beta")
"""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from . import accel as accel_mod
from .fleet import PRISTINE, Fleet, FleetSpec
from .vm import process

_ACCEL_KEY = pytest.StashKey[accel_mod.AccelChoice]()
_POOL_KEY = pytest.StashKey["FleetPool"]()
_USED_KEY = pytest.StashKey[list]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("nixos-deploy-harness", "VM fleets (nixos-deploy-harness)")
    group.addoption(
        "--vm-accel",
        choices=("auto", "kvm", "tcg"),
        default="auto",
        help="accelerator for VMs: auto probes that KVM really boots a guest (default: auto)",
    )
    group.addoption(
        "--keep-vms",
        action="store_true",
        help="leave the fleets running after the run (to inspect them)",
    )
    group.addoption(
        "--vm-artifacts",
        metavar="DIR",
        default="vm-artifacts",
        help="where serial logs and transcripts of failed tests go (default: ./vm-artifacts)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "fleet(spec, scope='session'): the FleetSpec the `fleet` fixture boots for this test "
        "(booted once per scope and worker, restored to its pristine snapshot before each test)",
    )


def _accel(config: pytest.Config) -> accel_mod.AccelChoice:
    if _ACCEL_KEY not in config.stash:
        config.stash[_ACCEL_KEY] = accel_mod.resolve(config.getoption("--vm-accel"))
    return config.stash[_ACCEL_KEY]


def pytest_report_header(config: pytest.Config) -> str:
    choice = _accel(config)
    return f"vm-accel: {choice.name} ({choice.reason})"


class FleetPool:
    """The booted fleets of this worker, one per spec."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.fleets: dict[FleetSpec, Fleet] = {}
        self.scopes: dict[FleetSpec, str] = {}

    def get(self, spec: FleetSpec, scope: str) -> Fleet:
        fleet = self.fleets.get(spec)
        if fleet is None:
            fleet = Fleet(
                spec,
                accel=_accel(self.config).name,
                keep=self.config.getoption("--keep-vms"),
                progress=self._progress,
            )
            fleet.boot()
            fleet.snapshot(PRISTINE)
            self.fleets[spec] = fleet
            self.scopes[spec] = scope
        else:
            fleet.reset()
        return fleet

    def _progress(self, text: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and not hasattr(self.config, "workerinput"):
            reporter.write_line(f"[vm] {text}")
        else:
            print(f"[vm] {text}", file=sys.stderr)

    def release(self, scope: str) -> None:
        for spec in [s for s, sc in self.scopes.items() if sc == scope]:
            self._close(spec)

    def close_all(self) -> None:
        for spec in list(self.fleets):
            self._close(spec)

    def _close(self, spec: FleetSpec) -> None:
        fleet = self.fleets.pop(spec)
        self.scopes.pop(spec, None)
        if not fleet.keep:
            fleet.close()


@pytest.fixture(scope="session")
def fleet_pool(request: pytest.FixtureRequest):
    pool = FleetPool(request.config)
    request.config.stash[_POOL_KEY] = pool
    yield pool
    pool.close_all()


@pytest.fixture
def fleet(request: pytest.FixtureRequest, fleet_pool: FleetPool) -> Fleet:
    """The fleet of the nearest `@pytest.mark.fleet(spec)`, in its pristine state."""
    marker = request.node.get_closest_marker("fleet")
    if marker is None or not marker.args or not isinstance(marker.args[0], FleetSpec):
        raise pytest.UsageError(
            f"{request.node.nodeid}: the `fleet` fixture needs @pytest.mark.fleet(FleetSpec(...))"
        )
    scope = marker.kwargs.get("scope", "session")
    if scope not in ("session", "module"):
        raise pytest.UsageError(f"fleet scope must be 'session' or 'module', not {scope!r}")
    fleet = fleet_pool.get(marker.args[0], scope)
    fleet.note(f"=== test {request.node.nodeid}")
    request.node.stash.setdefault(_USED_KEY, []).append(fleet)
    return fleet


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    pool = item.config.stash.get(_POOL_KEY, None)
    if pool is not None and (nextitem is None or nextitem.module is not item.module):
        pool.release("module")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    fleets = item.stash.get(_USED_KEY, [])
    if not report.failed or not fleets:
        return
    target = Path(item.config.getoption("--vm-artifacts")) / _safe_name(item.nodeid)
    saved = []
    for fleet in fleets:
        for machine in fleet:
            for source, suffix in ((machine.serial_log, "serial.log"), (machine.transcript_path, "transcript.log")):
                if source.exists():
                    target.mkdir(parents=True, exist_ok=True)
                    destination = target / f"{machine.name}.{suffix}"
                    shutil.copyfile(source, destination)
                    saved.append(str(destination))
    if saved:
        report.sections.append(("vm artifacts", "\n".join(saved)))


def _safe_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150]


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    pool = config.stash.get(_POOL_KEY, None)
    if config.getoption("--keep-vms") and pool is not None:
        for fleet in pool.fleets.values():
            terminalreporter.write_line(
                f"[vm] kept fleet {fleet.spec.name} running in {fleet.state_dir} (pids {fleet.pids()})"
            )


def pytest_unconfigure(config: pytest.Config) -> None:
    # Last line of defence (interrupts, internal errors): no VM outlives the run.
    if not config.getoption("--keep-vms", default=False):
        process.kill_all()
