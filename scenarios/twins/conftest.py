"""The seed's verification plan on NixOS twins (docs/twins.md, "Booting twins"): which twins,
whether they can boot here, and the `twins` fixture.

Marker `twins`: a scenario that needs booted twins. Whether they can boot is decided once per
process, only when such a scenario is selected, by the checks `deploy-harness up --twins` makes
(harness/twins/up_twins.py): Nix >= 2.18, KVM (or --vm-accel=tcg), and the flake's `twinFacts`
evaluating. Otherwise every twin scenario SKIPS with that exact reason; the scenarios' verdict
(scenarios/conftest.py) counts a skip as nothing run, so `pytest scenarios/` still exits 5 when
nothing ran.

Which twins: $NDH_TWINS (`Development,Production`, folders of hosts/), default every
deployable host (the plan's `main` deploy must switch every deployable twin); Development is the
guinea pig and is always booted. The cache host's twin comes along (fleet_spec.py)."""
from __future__ import annotations

import os

import pytest

from harness.images.nixos import default_flake
from harness.plugin import accel_choice, time_scale
from harness.twins import fleet_spec, requirements
from twin_lab import GUINEA_PIG, TwinLab, boot_lab

TWINS_ENV = "NDH_TWINS"
_VERDICT = pytest.StashKey["tuple[str | None, dict]"]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "twins: needs booted NixOS twins of the fleet's hosts (Nix >= 2.18, KVM or "
        "--vm-accel=tcg); skipped with the exact reason otherwise")


def decide(config: pytest.Config) -> tuple[str | None, dict]:
    """(why the twins cannot boot here or None, the hosts' facts)."""
    if _VERDICT in config.stash:
        return config.stash[_VERDICT]
    accel = "tcg" if config.getoption("--vm-accel") == "tcg" else "auto"
    problems = requirements.missing(accel)
    facts: dict = {}
    if not problems:
        try:
            facts = fleet_spec.read_facts(default_flake())
        except fleet_spec.TwinsError as error:
            problems = [str(error)]
    # The checks speak of deploy-harness's --accel; here the option is pytest's.
    problems = [p.replace("--accel tcg", "--vm-accel=tcg") for p in problems]
    reason = ("NixOS twins cannot boot here: " + "; ".join(problems)) if problems else None
    config.stash[_VERDICT] = (reason, facts)
    return config.stash[_VERDICT]


def chosen(facts: dict) -> list[str]:
    requested = os.environ.get(TWINS_ENV, "")
    if requested:
        hosts = fleet_spec.parse_twins(requested, sorted(facts))
    else:
        hosts = sorted(host for host, f in facts.items() if f.deployable)
    return hosts if GUINEA_PIG in hosts else [GUINEA_PIG, *hosts]


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("twins") is None:
        return
    reason, _ = decide(item.config)
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def twin_session(request: pytest.FixtureRequest):
    reason, facts = decide(request.config)
    if reason is not None:
        pytest.skip(reason)
    # The plugin's accelerator and the scenarios tier's time scale (TCG stretches every wait).
    with boot_lab(facts, chosen(facts), accel_choice(request.config).name, time_scale(request.config)) as lab:
        yield lab


@pytest.fixture
def twins(twin_session: TwinLab) -> TwinLab:
    """The twins and their deployer, back at their state right after boot (key installed)."""
    twin_session.restore()
    return twin_session
