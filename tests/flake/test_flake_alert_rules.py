"""The generation alert rules (modules/services/monitoring/generation-alerts.nix), rendered as the
Prometheus module renders them and checked by the real promtool (Debian's `prometheus` package):
`promtool check rules`, and `promtool test rules` with generation-alerts.test.yml."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from support import require

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "modules" / "services" / "monitoring"
RULES = MONITORING / "generation-alerts.nix"
UNIT_TESTS = MONITORING / "generation-alerts.test.yml"
ALERTS = {"NixosRebootPending", "NixosTestDeploymentActive", "NixosConfigurationOld"}


def render(directory: Path, arguments: str = "") -> Path:
    """generation-alerts.nix with `arguments` as a rule file (JSON, which is YAML), next to a
    copy of the promtool unit tests."""
    require("nix-instantiate", package="nix-bin")
    result = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "--expr",
         f"import (/. + {json.dumps(str(RULES))}) {{ {arguments} }}"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "generation-alerts.rules.yml").write_text(result.stdout)
    shutil.copy(UNIT_TESTS, directory / UNIT_TESTS.name)
    return directory


def promtool(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    require("promtool", package="prometheus")
    return subprocess.run(["promtool", *args], cwd=directory, capture_output=True, text=True, timeout=120)


def test_fleet_alert_rules_pass_promtool_check(tmp_path):
    directory = render(tmp_path)
    result = promtool(directory, "check", "rules", "generation-alerts.rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 3 rules found" in result.stdout
    rules = json.loads((directory / "generation-alerts.rules.yml").read_text())
    assert {rule["alert"] for group in rules["groups"] for rule in group["rules"]} == ALERTS


def test_fleet_alert_rules_pass_their_promtool_unit_tests(tmp_path):
    directory = render(tmp_path)
    result = promtool(directory, "test", "rules", UNIT_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("arguments", "alert"),
    [
        ('rebootPendingFor = "48h";', "NixosRebootPending"),
        ('testDeploymentFor = "1d";', "NixosTestDeploymentActive"),
        ("configMaxAgeDays = 31;", "NixosConfigurationOld"),
    ],
)
def test_fleet_alert_unit_tests_notice_another_threshold(tmp_path, arguments, alert):
    """The unit tests pin the default thresholds: rules rendered with another one fail them."""
    directory = render(tmp_path, arguments)
    result = promtool(directory, "test", "rules", UNIT_TESTS.name)
    assert result.returncode != 0, f"promtool test rules passed with {arguments}"
    assert f"alertname: {alert}" in result.stdout + result.stderr


def test_fleet_alert_rules_with_the_scenario_thresholds_are_valid(tmp_path):
    """The NixOS test's Prometheus (test/fleet/nodes/cache.nix) uses seconds, not hours."""
    directory = render(tmp_path, 'rebootPendingFor = "20s"; testDeploymentFor = "20s"; configMaxAgeDays = 1;')
    result = promtool(directory, "check", "rules", "generation-alerts.rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr
