"""Prometheus on Production (homelab.services.monitoring.prometheus): the scrape targets are
generated from the fleet (lib/scrape-targets.nix through lib/fleet-hosts.nix, as flake.nix
wires them), every deployable host once, and the alert rules file is generation-alerts.nix
rendered with the module's thresholds; its durations are Prometheus' syntax, as the real promtool
parses it. Needs NIXPKGS_LIB (and SOPS_NIX where whole hosts are evaluated), like
test_flake_modules.py, and promtool for the agreement test."""
from __future__ import annotations

import json
import subprocess

import pytest
from support.upstream import nixpkgs_lib
from test_flake_alert_rules import promtool, render
from flake_modules_lib import HOMELAB, HOSTS, REPO, evaluate, evaluate_fleet, nix_path, run

SCRAPE_TARGETS = nix_path(REPO / "lib" / "scrape-targets.nix")
RULES = REPO / "modules" / "services" / "monitoring" / "generation-alerts.nix"
PROMETHEUS_HOST = '{ networking.hostName = "Mon"; homelab.services.monitoring.prometheus.enable = true; }'
TWO_TARGETS = """{ homelab.services.monitoring.prometheus.scrapeTargets = [
  { host = "Alpha"; address = "192.0.2.10:9100"; } { host = "Beta"; address = "beta.example:9100"; } ]; }"""


def default_rules() -> dict:
    result = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr",
                             f"import {nix_path(RULES)} {{ }}"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_fleet_production_scrapes_every_deployable_host_once():
    facts = evaluate_fleet("""{
      deployable = builtins.filter (n: fleet.${n}.config.homelab.users.deploy.enable) (builtins.attrNames fleet);
      prometheusHosts = builtins.filter (n: fleet.${n}.config.homelab.services.monitoring.prometheus.enable) (builtins.attrNames fleet);
      production = fleet.Production.config.services.prometheus;
      addresses = builtins.mapAttrs (_: h: h.config.homelab.deploy.targetHost) fleet;
      openFirewall = builtins.mapAttrs (_: h: h.config.services.prometheus.exporters.node.openFirewall) fleet;
      failed = fleet.Production.failedAssertions;
      rules = (builtins.head fleet.Production.config.services.prometheus.ruleFiles).text;
    }""")
    assert facts["failed"] == []
    assert facts["prometheusHosts"] == ["Production"]
    prometheus = facts["production"]
    assert prometheus["enable"] is True and prometheus["port"] == 9090
    (job,) = prometheus["scrapeConfigs"]
    assert job["job_name"] == "node"
    scraped = {group["labels"]["instance"]: group["targets"] for group in job["static_configs"]}
    assert sorted(scraped) == sorted(facts["deployable"]) == sorted(h for h in HOSTS if h != "Template")
    for name, targets in scraped.items():
        assert targets == [f"{facts['addresses'][name]}:9100"], name
        assert facts["openFirewall"][name] is True, f"{name}'s node exporter must be reachable from Production"
    all_targets = [t for group in job["static_configs"] for t in group["targets"]]
    assert len(all_targets) == len(set(all_targets)), "no host scraped twice"
    assert json.loads(facts["rules"]) == default_rules()


def test_fleet_no_host_writes_scrape_targets_by_hand():
    for path in (REPO / "hosts").rglob("*.nix"):
        assert "scrapeTargets" not in path.read_text(), f"{path.relative_to(REPO)}: targets come from lib/fleet-hosts.nix"


def test_fleet_scrape_targets_follow_deploy_user_monitoring_and_port():
    mocks = """{
      Alpha.config = { homelab.users.deploy.enable = true; homelab.services.monitoring = { enable = true; nodeExporter.port = 9100; }; homelab.deploy.targetHost = "192.0.2.10"; };
      Beta.config = { homelab.users.deploy.enable = true; homelab.services.monitoring = { enable = true; nodeExporter.port = 9200; }; homelab.deploy.targetHost = "2001:db8::5"; };
      Quiet.config = { homelab.users.deploy.enable = true; homelab.services.monitoring = { enable = false; nodeExporter.port = 9100; }; homelab.deploy.targetHost = "quiet"; };
      Template.config = { homelab.users.deploy.enable = false; homelab.services.monitoring = { enable = true; nodeExporter.port = 9100; }; homelab.deploy.targetHost = "template"; };
    }"""
    result = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", f"import {SCRAPE_TARGETS} {mocks}"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        {"host": "Alpha", "address": "192.0.2.10:9100"},
        {"host": "Beta", "address": "[2001:db8::5]:9200"},
    ]


def test_fleet_prometheus_module_renders_its_thresholds_into_the_rules():
    facts = evaluate([HOMELAB, PROMETHEUS_HOST, TWO_TARGETS, """{ homelab.services.monitoring.prometheus = {
        scrapeInterval = "5s"; evaluationInterval = "5s"; openFirewall = true;
        alerts = { rebootPendingFor = "30s"; testDeploymentFor = "45s"; configMaxAgeDays = 7; }; }; }"""], """{
      inherit (r) failedAssertions;
      global = config.services.prometheus.globalConfig;
      rules = builtins.fromJSON (builtins.head config.services.prometheus.ruleFiles).text;
      firewall = config.networking.firewall.allowedTCPPorts;
    }""")
    assert facts["failedAssertions"] == []
    assert facts["global"] == {"scrape_interval": "5s", "evaluation_interval": "5s"}
    rules = {rule["alert"]: rule for rule in facts["rules"]["groups"][0]["rules"]}
    assert rules["NixosRebootPending"]["for"] == "30s"
    assert rules["NixosTestDeploymentActive"]["for"] == "45s"
    assert rules["NixosConfigurationOld"]["expr"] == f"nixos_config_age_seconds > {7 * 24 * 3600}"
    assert facts["firewall"] == [9090]


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ("[ ]", "scrapeTargets is empty"),
        ('[ { host = "Alpha"; address = "a:9100"; } { host = "Alpha"; address = "b:9100"; } ]', "names a host or an address twice"),
        ('[ { host = "Alpha"; address = "a:9100"; } { host = "Beta"; address = "a:9100"; } ]', "names a host or an address twice"),
    ],
)
def test_fleet_prometheus_refuses_missing_or_repeated_targets(targets, message):
    failed = evaluate([HOMELAB, PROMETHEUS_HOST, f"{{ homelab.services.monitoring.prometheus.scrapeTargets = {targets}; }}"],
                      "r.failedAssertions")
    assert len(failed) == 1 and message in failed[0], failed


# Prometheus' duration syntax (prometheus/common model.ParseDuration): [0-9]+ with a unit, the
# units y w d h m s ms each at most once and largest first; "0" alone too.
ACCEPTED = ["30s", "5m", "24h", "90d", "2w", "1y", "500ms", "1h30m", "1d12h", "1m500ms", "1y2w3d4h5m6s7ms", "0"]
REJECTED = ["", "30m1h", "1.5h", "1h1h", "1 hour", "1H", "h", "-1h", "30", "1h 30m"]
PROMETHEUS_MODULE = REPO / "modules" / "services" / "monitoring" / "prometheus.nix"


def module_accepts(values: list[str]) -> dict[str, bool]:
    """The duration option type's verdict on each value: the module's options alone (no NixOS
    options are declared, so the check of undeclared definitions is off; config is not read)."""
    option = "r.options.homelab.services.monitoring.prometheus.alerts.rebootPendingFor"
    expr = (f"let lib = import {nix_path(nixpkgs_lib())}; r = lib.evalModules {{ modules = [ {nix_path(PROMETHEUS_MODULE)} {{ _module.check = false; }} ]; }}; "
            f"in map {option}.type.check (builtins.fromJSON {json.dumps(json.dumps(values))})")
    result = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return dict(zip(values, json.loads(result.stdout)))


def test_fleet_prometheus_durations_follow_prometheus_syntax():
    verdicts = module_accepts(ACCEPTED + REJECTED)
    assert [v for v in ACCEPTED if not verdicts[v]] == [], "Prometheus accepts these"
    assert [v for v in REJECTED if verdicts[v]] == [], "Prometheus rejects these"


def test_fleet_prometheus_renders_a_compound_duration_into_the_rules():
    facts = evaluate([HOMELAB, PROMETHEUS_HOST, TWO_TARGETS, """{ homelab.services.monitoring.prometheus = {
        retentionTime = "1y2w"; alerts.rebootPendingFor = "1h30m"; alerts.testDeploymentFor = "1d12h"; }; }"""], """{
      retention = config.services.prometheus.retentionTime;
      rules = builtins.fromJSON (builtins.head config.services.prometheus.ruleFiles).text;
    }""")
    rules = {rule["alert"]: rule for rule in facts["rules"]["groups"][0]["rules"]}
    assert rules["NixosRebootPending"]["for"] == "1h30m" and rules["NixosTestDeploymentActive"]["for"] == "1d12h"
    assert facts["retention"] == "1y2w"


@pytest.mark.parametrize("value", ["1 hour", "30m1h", "1.5h"])
def test_fleet_prometheus_rejects_a_duration_prometheus_would_not_parse(value):
    result = run([HOMELAB, PROMETHEUS_HOST, TWO_TARGETS, f'{{ homelab.services.monitoring.prometheus.alerts.rebootPendingFor = "{value}"; }}'],
                 "(builtins.head config.services.prometheus.ruleFiles).text")
    assert result.returncode != 0
    assert "rebootPendingFor" in result.stderr and "Prometheus duration" in result.stderr, result.stderr


def test_fleet_prometheus_durations_agree_with_promtool(tmp_path):
    """The real promtool (Debian's prometheus) on a rule file with each value as `for:`, rendered
    by generation-alerts.nix without the module's type: it accepts exactly what the type does."""
    verdicts = module_accepts(ACCEPTED + REJECTED)
    promtool_verdicts = {}
    for index, value in enumerate(ACCEPTED + REJECTED):
        directory = render(tmp_path / str(index), f"rebootPendingFor = {json.dumps(value)};")
        checked = promtool(directory, "check", "rules", "generation-alerts.rules.yml")
        promtool_verdicts[value] = checked.returncode == 0
        if not promtool_verdicts[value]:
            assert "duration" in checked.stdout + checked.stderr, (value, checked.stdout + checked.stderr)
    assert promtool_verdicts == verdicts
    assert {v for v, ok in promtool_verdicts.items() if ok} == set(ACCEPTED), "promtool saw what the examples claim"


def test_fleet_prometheus_is_off_unless_enabled():
    facts = evaluate([HOMELAB, '{ networking.hostName = "Box"; }'], "config.services.prometheus")
    assert facts == {}
