"""Which scenarios can run here, said once in the pytest header, and the `homelab` fixture.

Tiers, decided once per process and only when a selected test is a NixOS scenario: `-m
preflight`, `-k`, `--lf` or one file without NixOS scenarios build nothing, and `--collect-only`
builds, probes and downloads nothing (docs/nixos-facts.md, "Accelerators"):
  nixos (kvm)   nix built the NixOS test nodes and KVM boots guests: every scenario runs;
  nixos (tcg)   the same under TCG because --vm-accel=tcg was given (slow: long timeouts);
  micro only    the NixOS scenarios (marker `nixos`) skip with the exact reason: no nix; a nix
                older than 2.18 (checked first); nix cannot build the nodes (nix's own first error lines: offline, no `kvm` system
                feature, ...); or no working KVM and --vm-accel=tcg not given. The micro-image
                pre-flight (test_preflight.py) runs in every tier, wherever a micro image can
                be had: $NDH_MICRO_IMAGE, the Debian recipe, else one already in the cache or
                the flake's, built by nix (harness/images/micro_sources.py).

The exit status is something a CI job can rely on: a run in which no scenario ran (every
selected one skipped, or none selected) says so in its last line and exits 5, unless that is
what was asked for: a selection with -m or -k, or --allow-no-scenarios. With --require-nixos, a
run in which no NixOS scenario ran exits 5 too (for a runner with Nix and KVM, as the nightly's).
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

import pytest

from harness.images import micro, micro_sources
from harness.images import nixos as nixos_image
from harness.plugin import accel_choice, say, set_time_scale
from scenario_fleet import NIXOS_FLEET, NIXOS_IMAGE, Homelab

# Guests under TCG run several times slower than under KVM: every wait of the NixOS tier (boots,
# reboots, QMP, the scenarios' own waits) is scaled by this under TCG.
TCG_SLOWDOWN = 5.0


@dataclass(frozen=True)
class Tier:
    name: str
    why: str
    nixos_skip: str | None  # why NixOS scenarios skip; None: they run
    slow: float = 1.0


_TIER_KEY = pytest.StashKey[Tier]()
_MICRO_KEY = pytest.StashKey["str | None"]()
# The exit status of a run that proved nothing (pytest's own for "no tests ran").
NOTHING_RAN = pytest.ExitCode.NO_TESTS_COLLECTED


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("scenarios", "the deploy scenarios (scenarios/conftest.py)")
    group.addoption(
        "--allow-no-scenarios", action="store_true",
        help="exit 0 even if no scenario ran (all skipped, none selected); without it such a run "
        "exits 5, unless -m or -k selected the scenarios",
    )
    group.addoption(
        "--require-nixos", action="store_true",
        help="exit 5 unless NixOS deploy scenarios ran (not only the micro pre-flight): for a "
        "runner that has Nix and KVM, where a skipped NixOS tier is a failure",
    )


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("collectonly") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(Verdict(config), "scenarios-verdict")
    config.addinivalue_line(
        "markers",
        "nixos: needs the NixOS nodes of test/vm-test.nix, built by nix, and KVM (or "
        "--vm-accel=tcg); skipped with the exact reason otherwise",
    )
    config.addinivalue_line(
        "markers",
        "regression: reproduces a deploy bug in isolation (scenarios/regressions/README.md)",
    )


def decide_tier(config: pytest.Config) -> Tier:
    """Build the NixOS nodes once (cached per process), then look at the accelerator."""
    if _TIER_KEY in config.stash:
        return config.stash[_TIER_KEY]
    verdict = nixos_image.availability(NIXOS_IMAGE, sorted(NIXOS_FLEET.nodes), _progress(config))
    forced_tcg = config.getoption("--vm-accel") == "tcg"
    accel = accel_choice(config) if verdict.ok else None  # no nodes: no probe needed
    if accel is None:
        tier = Tier("micro only", verdict.reason.splitlines()[0], verdict.reason)
    elif accel.name == "kvm":
        tier = Tier("nixos (kvm)", f"{verdict.reason}; KVM: {accel.reason}", None)
    elif forced_tcg:
        tier = Tier("nixos (tcg)", f"{verdict.reason}; {accel.reason}: long timeouts", None, TCG_SLOWDOWN)
    else:
        reason = (
            f"no working KVM ({accel.reason}); NixOS scenarios under TCG take hours: "
            "pass --vm-accel=tcg to run them anyway"
        )
        tier = Tier("micro only", reason, reason)
    config.stash[_TIER_KEY] = tier
    set_time_scale(config, tier.slow)  # before any NixOS fleet boots
    _progress(config, prefix="")(f"scenarios tier: {tier.name} ({tier.why})")
    return tier


def _progress(config: pytest.Config, prefix: str = "[scenarios] "):
    """Lines on the terminal as they happen (the node build streams nix's progress here)."""
    return lambda text: say(config, text, prefix)


def pytest_report_header(config: pytest.Config) -> str:
    if config.getoption("collectonly"):
        return "scenarios tier: not decided (--collect-only builds nothing)"
    return "scenarios: the tier is decided after collection, only if a NixOS scenario is selected"


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    """With --collect-only: every scenario with its markers (nixos, fleet, regression, xfail).
    Otherwise the tier, decided here only when a selected test needs it."""
    if config.getoption("collectonly"):
        return [
            f"{item.nodeid}  [{', '.join(sorted({mark.name for mark in item.iter_markers()}))}]"
            for item in items
        ]
    if config.pluginmanager.get_plugin("dsession") is not None:
        # pytest-xdist's controller collects nothing itself: each worker decides when it first
        # runs a NixOS scenario, and says so on its stderr.
        return ["scenarios tier: decided by each xdist worker when it first runs a NixOS scenario"]
    if not any(item.get_closest_marker("nixos") for item in items):
        return ["scenarios tier: micro only (no NixOS scenario selected: nothing built)"]
    decide_tier(config)  # prints its own line (and nix's progress) as it goes
    return []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The pre-flight goes first: if this host cannot run VMs at all, that is the first thing
    # the run reports, before any NixOS scenario (stable sort: the rest keep their order).
    items.sort(key=lambda item: item.get_closest_marker("preflight") is None)


def micro_image_missing(config: pytest.Config) -> str | None:
    """Why the pre-flight's micro image cannot be had here, or None once it is ready. Tried once
    per process: $NDH_MICRO_IMAGE or the Debian recipe, else the cache or nix
    (micro_sources), whose image is then named in $NDH_MICRO_IMAGE for every fleet."""
    if _MICRO_KEY not in config.stash:
        progress = _progress(config)
        missing = micro.missing_reason(progress)
        if missing is not None and not os.environ.get(micro.PREBUILT_ENV):
            found = micro_sources.find(progress)
            if found.directory is None:
                missing = f"{missing}; and {found.how}"
            else:
                progress(f"micro image: {found.how} ({missing.splitlines()[0]})")
                os.environ[micro.PREBUILT_ENV] = str(found.directory)
                missing = micro.missing_reason(progress)
        config.stash[_MICRO_KEY] = missing
    return config.stash[_MICRO_KEY]


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before any fixture: a skipped scenario never boots (or builds) a fleet.
    if item.get_closest_marker("preflight") is not None:
        missing = micro_image_missing(item.config)
        if missing is not None:
            pytest.skip(f"pre-flight needs the micro image: {missing}")
    if item.get_closest_marker("nixos") is None:
        return
    tier = decide_tier(item.config)
    if tier.nixos_skip is not None:
        pytest.skip(tier.nixos_skip)


@pytest.fixture
def homelab(request: pytest.FixtureRequest, fleet) -> Homelab:
    """The NixOS fleet in its pristine state (restored from its snapshot), ready to deploy."""
    return Homelab(fleet, slow=decide_tier(request.config).slow)


# -- the run's verdict: did any scenario run? ------------------------------------------------------


class Verdict:
    """Counts what ran (a test ran if its call phase did: passed, failed, xfailed; a skip did
    not) and, when the run proved less than asked, says so in its last line and sets its exit
    status. Registered by pytest_configure; under xdist the controller judges from the reports."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.ran = 0
        self.ran_nixos = 0
        self.skipped: Counter[str] = Counter()  # reason -> how many

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        skip = report.skipped and not hasattr(report, "wasxfail")
        if report.when == "call" and not skip:
            self.ran += 1
            self.ran_nixos += "nixos" in report.keywords
        elif skip:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            self.skipped[reason.removeprefix("Skipped: ").splitlines()[0]] += 1

    def shortfall(self) -> str | None:
        """What the run did not do that it should have, or None."""
        require = self.config.getoption("--require-nixos")
        if self.ran and (self.ran_nixos or not require):
            return None
        skipped = sum(self.skipped.values())
        return ("no scenario ran" if not self.ran else "no NixOS scenario ran") + (
            f" ({skipped} skipped, for the reasons above)" if skipped else " (none was selected)")

    def accepted_by(self) -> list[str]:
        """The options by which the user accepted a run in which no scenario ran."""
        if self.config.getoption("--require-nixos"):
            return []
        given = (("-m", self.config.option.markexpr), ("-k", self.config.option.keyword),
                 ("--allow-no-scenarios", self.config.getoption("--allow-no-scenarios")))
        return [name for name, value in given if value]

    def last_line(self, shortfall: str, accepted: list[str], status: int) -> str:
        if accepted and status == NOTHING_RAN:
            return f"{shortfall}; exit status {status}, pytest's own when nothing is selected"
        if accepted:
            return f"{shortfall}; exit status {status}, as {' and '.join(accepted)} asked"
        if self.config.getoption("--require-nixos"):
            return f"{shortfall}; exit status {status}: --require-nixos asks for NixOS scenarios"
        return (f"{shortfall}; exit status {status}: a run that tests nothing fails (select scenarios "
                "with -m or -k, or pass --allow-no-scenarios, to accept one)")

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int):
        """The outermost wrapper: the exit status is set before pytest's summary, the line is
        printed after it, so it is the run's last line. A failed or interrupted run keeps its
        own status and says nothing more."""
        shortfall = None
        if exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            shortfall = self.shortfall()
        accepted = self.accepted_by()
        if shortfall is not None and not accepted:
            session.exitstatus = NOTHING_RAN
        elif shortfall is not None and "--allow-no-scenarios" in accepted:
            session.exitstatus = pytest.ExitCode.OK
        result = yield
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if shortfall is not None and reporter is not None:
            for reason, count in self.skipped.most_common():
                reporter.write_line(f"[scenarios] {count} skipped: {reason}")
            line = self.last_line(shortfall, accepted, int(session.exitstatus))
            reporter.write_line(line, red=not accepted, yellow=bool(accepted), bold=True)
        return result
