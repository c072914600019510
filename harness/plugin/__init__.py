"""pytest plugin: fleets of VMs as fixtures, booted once and restored from a snapshot for every
test; options --vm-accel, --keep-vms, --vm-artifacts; serial logs and transcripts of failed
tests saved and named in the report. Each xdist worker has its own fleets, sockets and switches.

With --keep-vms, fleets boot in keep mode (harness/keep/): in the per-user fleets
directory, with reattachable consoles and a state file, so they outlive the run (also a failed
or interrupted one) and `deploy-harness shell NODE --fleet NAME` reaches them; the summary
prints those commands. `harness.interactive.pause(fleet)` stops a test there and then.

    micro_pair = FleetSpec("pair", {"alpha": NodeSpec(), "beta": NodeSpec()})

    @pytest.mark.fleet(micro_pair)
    def test_ping(fleet):
        fleet["alpha"].succeed("ping -c1 beta")
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import uuid
from pathlib import Path

import pytest

from .. import accel as accel_mod
from .. import keep, state_dirs
from ..fleet import PRISTINE, Fleet, FleetSpec
from ..vm import console, disk_aio, process

# Fleets and pytest-xdist: the tests of one fleet run in one worker (one fleet per run).
pytest_plugins = ["harness.plugin.xdist_fleets"]

# Lines of each node's serial log and transcript a failed test's report (and JUnit XML) carries.
JUNIT_TAIL_LINES = 40

_ACCEL_KEY = pytest.StashKey[accel_mod.AccelChoice]()
_SCALE_KEY = pytest.StashKey[float]()
_POOL_KEY = pytest.StashKey["FleetPool"]()
_USED_KEY = pytest.StashKey[list]()
# Marks the fleets one --keep-vms run kept (xdist workers inherit it from the controller).
_RUN_ID_ENV = "NDH_KEEP_RUN_ID"
_active_configs: list[pytest.Config] = []  # for harness.interactive.pause()


def active_config() -> pytest.Config | None:
    return _active_configs[-1] if _active_configs else None


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
        "--reuse-fleet",
        metavar="NAME",
        action="append",
        default=[],
        help="run the tests whose fleet has this kept fleet's nodes (`deploy-harness status` "
        "lists them) against it, restoring its pristine snapshot before each test, instead of "
        "booting a new fleet (repeatable)",
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
    if config.getoption("--keep-vms") and not hasattr(config, "workerinput"):
        os.environ[_RUN_ID_ENV] = uuid.uuid4().hex
    _active_configs.append(config)
    # SIGTERM and SIGHUP (a CI job cancelled, a terminal closed) tear down like Ctrl-C.
    for number in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(number) == signal.SIG_DFL:
            signal.signal(number, _interrupt)


def _interrupt(number: int, _frame) -> None:
    signal.signal(number, signal.SIG_DFL)  # a second signal ends the process at once
    raise KeyboardInterrupt(f"{signal.Signals(number).name} received")


def pytest_sessionstart(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):
        return  # the controller collects for the whole run
    try:
        removed = state_dirs.collect()
    except state_dirs.UntrustedDirectory as refused:  # every fleet of the run will say so too
        say(session.config, f"{refused} (no fleet can boot until then)")
        return
    if removed:
        say(session.config, f"removed {len(removed)} state director{'y' if len(removed) == 1 else 'ies'} "
            f"of dead runs: {', '.join(map(str, removed))}")


def accel_choice(config: pytest.Config) -> accel_mod.AccelChoice:
    """The accelerator, decided on first use (`auto` probes KVM then, and says so on the
    terminal): a run that boots no VM probes nothing."""
    if _ACCEL_KEY not in config.stash:
        requested = config.getoption("--vm-accel")
        choice = accel_mod.resolve(requested)
        config.stash[_ACCEL_KEY] = choice
        if requested == "auto":
            say(config, f"vm-accel: {choice.name} ({choice.reason})")
        aio = disk_aio.choice()  # decided with the accelerator: the first boot says how restores read
        say(config, f"disk-aio: {aio.name} ({aio.reason})")
    return config.stash[_ACCEL_KEY]


def set_time_scale(config: pytest.Config, factor: float) -> None:
    """Stretch every wait of the fleets booted from now on (boots, reboots, QMP) by `factor`:
    the scenarios' tier sets it for slow guests (TCG)."""
    config.stash[_SCALE_KEY] = factor


def time_scale(config: pytest.Config) -> float:
    return config.stash.get(_SCALE_KEY, 1.0)


def say(config: pytest.Config, text: str, prefix: str = "[vm] ") -> None:
    """A line on the terminal as it happens, past output capture; an xdist worker has no
    terminal: its lines go to stderr."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or hasattr(config, "workerinput"):
        print(f"{prefix}{text}", file=sys.stderr, flush=True)
    elif capture is None:
        reporter.write_line(f"{prefix}{text}")
    else:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"{prefix}{text}")


def pytest_report_header(config: pytest.Config) -> list[str]:
    requested = config.getoption("--vm-accel")
    if requested != "auto":
        accel = f"vm-accel: {requested} (forced by --vm-accel={requested})"
    elif config.getoption("collectonly"):
        accel = "vm-accel: auto, not probed (--collect-only boots nothing)"
    else:
        accel = "vm-accel: auto, probed when the first fleet boots"
    return [accel, f"vm-state: {state_dirs.describe_root()}"]


class FleetPool:
    """The booted fleets of this worker, one per spec."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.fleets: dict[FleetSpec, Fleet] = {}
        self.scopes: dict[FleetSpec, str] = {}
        self.keep = bool(config.getoption("--keep-vms"))
        self.kept: dict[FleetSpec, keep.KeptFleet] = {}  # --keep-vms only
        self.reused: dict[FleetSpec, keep.ReusedFleet] = {}  # --reuse-fleet only

    def get(self, spec: FleetSpec, scope: str, test_id: str | None = None) -> Fleet:
        fleet = self.fleets.get(spec)
        fresh = fleet is None
        if fleet is None:
            fleet = self._reuse(spec) or self._boot(spec)
            self.fleets[spec] = fleet
            self.scopes[spec] = scope
        if not fresh or spec in self.reused:
            fleet.reset()  # a reused fleet starts pristine too: a person may have used it
        if spec in self.kept:
            self.kept[spec].save(last_test=test_id)  # pids change when reset restarts a node
        if spec in self.reused:
            self.reused[spec].save(last_test=test_id)
        return fleet

    def _reuse(self, spec: FleetSpec) -> Fleet | None:
        """--reuse-fleet: the first named kept fleet with this spec's nodes, attached."""
        names = [n for n in self.config.getoption("--reuse-fleet") if n not in self._reused_names()]
        if not names:
            return None
        record = keep.matching(names, spec)
        if record is None:
            self._progress(f"--reuse-fleet: none of {', '.join(names)} has the nodes of fleet {spec.name} "
                           f"({keep.why_not_matching(names, spec)}); booting it")
            return None
        reused = keep.ReusedFleet(record, "pytest --reuse-fleet")
        fleet = reused.open(spec, progress=self._progress)
        self.reused[spec] = reused
        self._progress(f"fleet {spec.name}: reusing kept fleet {record.name}, restored to {PRISTINE} before each test")
        return fleet

    def _reused_names(self) -> set[str]:
        return {reused.record.name for reused in self.reused.values()}

    def _boot(self, spec: FleetSpec) -> Fleet:
        base_dir = None
        if self.keep:
            base_dir = keep.claim_free(spec.name, self._keep_origin(), os.environ.get(_RUN_ID_ENV))
        fleet = Fleet(
            spec, accel=accel_choice(self.config).name, keep=self.keep, base_dir=base_dir,
            time_scale=time_scale(self.config), progress=self._progress,
        )
        try:
            fleet.boot()
            fleet.snapshot(PRISTINE)
            if self.keep:
                kept = keep.KeptFleet(fleet, self._keep_origin(), os.environ.get(_RUN_ID_ENV))
                kept.hold()
                self.kept[spec] = kept
        except BaseException:
            # Not in the pool yet, so nothing else would end it: no VM may outlive a failed boot.
            fleet.close()
            if base_dir is not None:
                keep.stop_fleet(base_dir)  # the VLAN switches run as daemons in keep mode
            raise
        return fleet

    def _keep_origin(self) -> str:
        worker = getattr(self.config, "workerinput", {}).get("workerid")
        return "pytest --keep-vms" + (f" (xdist worker {worker})" if worker else "")

    def kept_fleet(self, fleet: Fleet) -> "keep.KeptFleet | None":
        return next((k for k in self.kept.values() if k.fleet is fleet), None)

    def _progress(self, text: str) -> None:
        """Boot progress on the terminal, past output capture (a fleet boot takes a while).
        xdist workers have no terminal: their lines go to stderr, shown with the report."""
        say(self.config, text)

    def release(self, scope: str) -> None:
        for spec in [s for s, sc in self.scopes.items() if sc == scope]:
            self._close(spec)

    def close_all(self) -> None:
        for spec in list(self.fleets):
            self._close(spec)

    def _close(self, spec: FleetSpec) -> None:
        fleet = self.fleets.pop(spec)
        self.scopes.pop(spec, None)
        kept = self.kept.pop(spec, None)
        reused = self.reused.pop(spec, None)
        if reused is not None:
            reused.let_go()  # QEMU runs on, for the next run or a person
        elif kept is not None:
            kept.let_go()  # QEMU runs on; `deploy-harness` attaches from now on
        elif not fleet.keep:
            fleet.close()


def fleet_pool_of(config: pytest.Config) -> FleetPool | None:
    """This run's fleet pool (None until a test asks for a fleet)."""
    return config.stash.get(_POOL_KEY, None)


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
    fleet = fleet_pool.get(marker.args[0], scope, request.node.nodeid)
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
                    # Private: transcripts hold every command and its output.
                    target.mkdir(mode=0o700, parents=True, exist_ok=True)
                    destination = target / f"{machine.name}.{suffix}"
                    shutil.copyfile(source, destination)
                    destination.chmod(0o600)
                    saved.append(str(destination))
                    # JUnit XML: the paths as properties, the tails as system-out (with
                    # junit_logging=system-out or all), so a CI page shows the evidence.
                    item.user_properties.append((f"vm-{machine.name}-{suffix}", str(destination)))
            for what, text in (
                ("serial tail", machine.serial_tail(JUNIT_TAIL_LINES)),
                ("transcript tail", console.tail(machine.transcript_path, JUNIT_TAIL_LINES)),
            ):
                # The JUnit XML takes captured output from the teardown report, which is built
                # from the item's sections: add them there, and to this report for the terminal.
                item.add_report_section(f"{machine.name} {what}", "stdout", text)
                report.sections.append((f"Captured stdout {machine.name} {what}", text))
    if saved:
        report.sections.append(("vm artifacts", "\n".join(saved)))


def _safe_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150]


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    if not config.getoption("--keep-vms") or hasattr(config, "workerinput"):
        return
    # From the state files: under xdist the workers kept the fleets, not this process.
    run_id = os.environ.get(_RUN_ID_ENV)
    try:
        records, skipped = keep.survey()
    except keep.FleetStateError as refused:  # a fleets root that is not the user's
        terminalreporter.write_line(f"[vm] --keep-vms: {refused}")
        return
    for refused in skipped:  # a directory there that fails the trust rule: not ours to list
        terminalreporter.write_line(f"[vm] --keep-vms: skipped: {refused}")
    kept = [r for r in records if run_id and r.run_id == run_id]
    if not kept:
        terminalreporter.write_line("[vm] --keep-vms: no fleet was booted, none is kept")
    for record in kept:
        terminalreporter.write_line(f"[vm] --keep-vms kept fleet {record.name} (pids {record.pids()})")
        for line in keep.how_to_attach(record.name, record.nodes, record.directory):
            terminalreporter.write_line(f"[vm]   {line}")
        if record.last_test:
            terminalreporter.write_line(f"[vm]   It is as test {record.last_test} left it.")


def pytest_unconfigure(config: pytest.Config) -> None:
    if config in _active_configs:
        _active_configs.remove(config)
    # Last line of defence (interrupts, internal errors): no VM outlives the run.
    if not config.getoption("--keep-vms", default=False):
        process.kill_all()
