"""Which scenarios can run here, said once in the pytest header, and the `homelab` fixture.

Tiers, decided once per process and only when a selected test is a NixOS scenario: `-m
preflight`, `-k`, `--lf` or one file without NixOS scenarios build nothing, and `--collect-only`
builds, probes and downloads nothing (docs/nixos-facts.md, "Accelerators"):
  nixos (kvm)   nix built the NixOS test nodes and KVM boots guests: every scenario runs;
  nixos (tcg)   the same under TCG because --vm-accel=tcg was given (slow: long timeouts);
  micro only    the NixOS scenarios (marker `nixos`) skip with the exact reason: no nix; a nix
                older than 2.18 (checked first); nix cannot build the nodes (nix's own first error lines: offline, no `kvm` system
                feature, ...); or no working KVM and --vm-accel=tcg not given. The micro-image
                pre-flight (test_preflight.py) runs in every tier.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from harness.images import micro
from harness.images import nixos as nixos_image
from harness.pytest_plugin import accel_choice, say, set_time_scale
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


def pytest_configure(config: pytest.Config) -> None:
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
    """Why the pre-flight's micro image cannot be had here (neither $NDH_MICRO_IMAGE nor the
    Debian recipe), or None once it is ready. Tried once per process."""
    if _MICRO_KEY not in config.stash:
        config.stash[_MICRO_KEY] = micro.missing_reason(_progress(config))
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
