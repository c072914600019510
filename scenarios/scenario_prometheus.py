"""The test fleet's Prometheus (on the `cache` node, test/fleet/nodes/cache.nix) through its HTTP
API, asked with curl on that node: scrape targets, instant queries, alerts."""
from __future__ import annotations

import json
import shlex
import time
from typing import Callable
from urllib.parse import urlencode

PORT = 9090


class Prometheus:
    def __init__(self, machine, slow: float = 1.0) -> None:
        self.machine = machine
        self.slow = slow

    def api(self, path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{PORT}/api/v1/{path}" + (f"?{urlencode(params)}" if params else "")
        answer = json.loads(self.machine.succeed(f"curl --silent --show-error --fail {shlex.quote(url)}"))
        assert answer.get("status") == "success", f"Prometheus answered {path}: {answer}"
        return answer["data"]

    def target_health(self) -> dict[str, str]:
        """instance -> health ("up", "down", "unknown") of every active scrape target."""
        return {t["labels"]["instance"]: t["health"] for t in self.api("targets")["activeTargets"]}

    def samples(self, query: str) -> dict[str, float]:
        """instance -> value of an instant vector query."""
        return {r["metric"]["instance"]: float(r["value"][1]) for r in self.api("query", query=query)["result"]}

    def alerts(self, instance: str) -> dict[str, str]:
        """alertname -> state ("pending", "firing") of the alerts about `instance`."""
        return {
            alert["labels"]["alertname"]: alert["state"]
            for alert in self.api("alerts")["alerts"]
            if alert["labels"].get("instance") == instance
        }

    def wait_until(self, what: str, check: Callable[[], object], timeout: float) -> None:
        deadline = time.monotonic() + timeout * self.slow
        last: object = None
        while time.monotonic() < deadline:
            last = check()
            if last is True:
                return
            time.sleep(2)
        raise AssertionError(f"Prometheus: {what} within {timeout * self.slow:.0f} s; last seen: {last}")

    def wait_for_alert(self, instance: str, alertname: str, state: str = "firing", timeout: float = 180) -> None:
        def check():
            alerts = self.alerts(instance)
            return True if alerts.get(alertname) == state else alerts
        self.wait_until(f"{alertname} did not become {state} for {instance}", check, timeout)

    def wait_for_no_alert(self, instance: str, alertname: str, timeout: float = 180) -> None:
        def check():
            alerts = self.alerts(instance)
            return True if alertname not in alerts else alerts
        self.wait_until(f"{alertname} did not clear for {instance}", check, timeout)
