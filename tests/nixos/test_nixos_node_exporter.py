"""The generation exporter's textfile, served by the real node exporter (Debian's
prometheus-node-exporter, the textfile collector alone) on 127.0.0.1, scraped over HTTP as
Prometheus scrapes it: the samples are the ones harness.nixos's probes decide for the same fake
machine (real store paths, real Nix profiles), and they follow the machine when it changes."""
from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from typing import Iterator

import pytest
from support import HostShell
from support import require

from harness import nixos

NODE_EXPORTER = "prometheus-node-exporter"


def _loopback_works() -> bool:
    """Loopback is down in a fresh network namespace (unshare -n): nothing can be scraped."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        try:
            socket.create_connection(server.getsockname(), timeout=2).close()
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class NodeExporter:
    """One node exporter process on 127.0.0.1, started and stopped by pid by this test."""

    def __init__(self, textfile_dir: Path, log: Path) -> None:
        self.textfile_dir = textfile_dir
        self.log = log
        self.process: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> None:
        # Another process may take the port between the probe and the bind: try a few.
        for _ in range(5):
            self.port = _free_port()
            with self.log.open("ab") as log:
                self.process = subprocess.Popen(
                    [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{self.port}",
                     "--collector.disable-defaults", "--collector.textfile",
                     f"--collector.textfile.directory={self.textfile_dir}"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                )
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    self.scrape_text()
                    return
                except OSError:
                    time.sleep(0.1)
            self.stop()
            if "address already in use" not in self.log.read_text():
                break
        pytest.fail(f"node exporter did not answer on 127.0.0.1:{self.port}; its log:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def scrape_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
            return response.read().decode()

    def scrape(self) -> dict[str, dict]:
        """Every sample as {name: {"labels": ..., "value": ...}} (one sample per family here)."""
        from prometheus_client.parser import text_string_to_metric_families

        samples = {}
        for family in text_string_to_metric_families(self.scrape_text()):
            for sample in family.samples:
                samples.setdefault(sample.name, {"labels": sample.labels, "value": sample.value})
        return samples


@pytest.fixture
def node_exporter(root, tmp_path):
    require(NODE_EXPORTER)
    pytest.importorskip("prometheus_client", reason="prometheus_client is missing from this Python: pip install -e . into .venv (ci/bootstrap does)")
    if not _loopback_works():
        pytest.skip("127.0.0.1 is unreachable here (loopback down, e.g. under unshare -n): node exporter cannot be scraped")
    exporter = NodeExporter(root.textfile, tmp_path / "node-exporter.log")
    exporter.start()
    yield exporter
    exporter.stop()


@pytest.fixture
def shell() -> Iterator[HostShell]:
    require("bash", "readlink")
    with HostShell("node-exporter") as shell:
        yield shell


def served_generation_metrics(exporter: NodeExporter) -> dict[str, int]:
    samples = exporter.scrape()
    assert samples["node_textfile_scrape_error"]["value"] == 0, "node exporter could not read the textfile"
    served = {}
    for name, sample in samples.items():
        if name.startswith("nixos_"):
            assert sample["labels"] == {"host": "parity"}, sample
            if name != "nixos_config_age_seconds":
                served[name] = int(sample["value"])
    assert "nixos_config_age_seconds" in samples
    return served


def test_node_exporter_serves_what_the_probes_decide(root, store, shell, node_exporter):
    one_top, one = store.system("one", kernel="kernel-a")
    two_top, two = store.system("two", kernel="kernel-a", initrd="initrd-b")
    root.deploy(one)
    root.link("current", one_top)
    root.link("booted", one_top)
    root.loader_conf("timeout 5\n")
    root.entry("nixos-generation-1.conf", 1, one_top)
    written = root.exporter_metrics()
    probed = nixos.probe_system(shell, root.paths).metrics()
    assert served_generation_metrics(node_exporter) == probed == written
    assert probed["nixos_reboot_pending"] == 0

    # `deploy --boot` of a system with another initrd: the next boot changes, the running one not.
    root.deploy(two)
    root.entry("nixos-generation-2.conf", 2, two_top)
    written = root.exporter_metrics()
    probed = nixos.probe_system(shell, root.paths).metrics()
    served = served_generation_metrics(node_exporter)
    assert served == probed == written
    assert (served["nixos_current_generation"], served["nixos_boot_generation"]) == (1, 2)
    assert served["nixos_reboot_pending"] == 1


def test_node_exporter_serves_a_test_branch_deploy(root, store, shell, node_exporter):
    one_top, one = store.system("one")
    two_top, two = store.system("two", kernel="kernel-b")
    root.deploy(one)
    root.deploy(two)  # the test profile's nix-env --set
    root.link("current", two_top)  # switch-to-configuration test
    root.link("booted", one_top)
    root.loader_conf("timeout 3\n")
    root.entry("nixos-generation-1.conf", 1, one_top)
    root.exporter_metrics()
    probed = nixos.probe_system(shell, root.paths).metrics()
    served = served_generation_metrics(node_exporter)
    assert served == probed
    assert (served["nixos_current_generation"], served["nixos_boot_generation"]) == (2, 1)
    assert served["nixos_reboot_pending"] == 0


def test_node_exporter_reports_a_textfile_it_cannot_parse(root, node_exporter):
    """The scrape error gauge is what turns a broken textfile into something visible."""
    (root.textfile / "nixos_generation.prom").write_text("nixos_current_generation{host=\"parity\" 1\n")
    assert node_exporter.scrape()["node_textfile_scrape_error"]["value"] == 1
