"""The NixOS fleet of test/vm-test.nix and the words the scenarios use to drive it.

    pytestmark = [pytest.mark.nixos, pytest.mark.fleet(NIXOS_FLEET)]

    def test_something(homelab):
        before = homelab.baseline("target")           # deploy target-v1, check it worked
        result = homelab.deploy("target-v2")          # deploy-rs on the deployer
        after = homelab.state("target")               # harness.nixos probes on the target

Every scenario asserts what the targets *are* (harness.nixos probes, files, metrics), never only
what deploy-rs *said* (docs/deploy-rs-facts.md: its rollback message comes from its flags).
"""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from prometheus_client.parser import text_string_to_metric_families

from harness import cache, nixos
from harness.deploy import DeployOptions, DeployResult, run_deploy
from harness.fleet import Fleet, FleetSpec, NodeSpec
from harness.images.nixos import NixosTestImage

REPO = Path(__file__).resolve().parents[1]
KEYS = REPO / "test" / "fleet" / "keys"
# The test fleet's facts, one source for the Nix test and these scenarios: test/fleet/facts.json.
FACTS = json.loads((REPO / "test" / "fleet" / "facts.json").read_text())
CACHE_URL = FACTS["cacheUrl"]
FLEET_DIR = FACTS["fleetDir"]  # the deployer's fleet flake (test/fleet/nodes/deployer.nix)
TEXTFILE = f"{FACTS['textfileDirectory']}/nixos_generation.prom"
# The deploy's ssh options, and no prompt ever for the scenarios' own ssh.
SSH_OPTIONS = shlex.join([*FACTS["sshOptions"], "-o", "BatchMode=yes"])
TARGETS = tuple(FACTS["targets"])
# A canary as deploy-rs names it, <tempPath>/deploy-rs-canary-<store hash>, in the targets'
# tempPath, which test/fleet/nodes/target.nix sets from the facts too.
CANARY = f"{FACTS['deployTempPath']}/deploy-rs-canary-" + "0" * 32

NIXOS_IMAGE = NixosTestImage()
# The nodes of test/vm-test.nix, as facts.json lists them (their VLANs are handed to the start
# scripts as QEMU_VDE_SOCKET_<n>).
NIXOS_FLEET = FleetSpec(
    "nixos-deploy",
    {
        name: NodeSpec(vlans=tuple(node["vlans"]), allow_reboot=node["allowReboot"])
        for name, node in FACTS["nodes"].items()
    },
    image=NIXOS_IMAGE,
)


class DeployFailed(AssertionError):
    """A deploy that had to succeed did not (regression scenarios expect exactly this)."""


def public_key(name: str) -> str:
    return (KEYS / name).read_text().strip()


class Homelab:
    """The booted NixOS fleet, in the vocabulary of the scenarios. `slow` scales timeouts
    (TCG runs the same guests several times slower)."""

    def __init__(self, fleet: Fleet, slow: float = 1.0) -> None:
        self.fleet = fleet
        self.slow = slow
        self.deployer = fleet["deployer"]
        self.cache = fleet["cache"]

    def __getitem__(self, node: str):
        return self.fleet[node]

    def seconds(self, seconds: float) -> float:
        return seconds * self.slow

    # -- readiness -----------------------------------------------------------------------

    def ready(self) -> None:
        """Wait until the fleet can deploy: fleet flake locked, sshd up, cache listening. A
        checkpoint: the first scenario of a run waits, the others restore the ready fleet."""
        def wait(directory) -> None:
            self.deployer.wait_for_unit("ndh-fleet.service", timeout=self.seconds(600))
            for node in TARGETS:
                self.fleet[node].wait_for_unit("multi-user.target", timeout=self.seconds(600))
                self.fleet[node].wait_for_unit("sshd.service", timeout=self.seconds(120))
            # Newer nixpkgs socket-activates Harmonia: wait for the port (docs/nix-cache-facts.md).
            self.cache.wait_for_open_port(5000, timeout=self.seconds(300))

        self.fleet.checkpoint("ready", wait)

    # -- deploying -----------------------------------------------------------------------

    def deploy(
        self,
        configs: str | Sequence[str],
        *,
        test_branch: bool = False,
        boot: bool = False,
        magic_rollback: bool | None = None,
    ) -> DeployResult:
        """`deploy` on the deployer for the configurations named "<node>-<variant>"."""
        names = [configs] if isinstance(configs, str) else list(configs)
        nix_args = ["--offline"]
        env: dict[str, str] = {}
        if test_branch:
            if len(names) != 1:
                raise ValueError("a test-branch deploy names exactly one configuration")
            # lib/deploy-nodes.nix: the test profile exists only for HOMELAB_DEPLOY_TEST_HOST
            # under impure evaluation.
            targets: list[str] = [f".#{names[0]}.test"]
            env["HOMELAB_DEPLOY_TEST_HOST"] = names[0]
            nix_args.append("--impure")
        else:
            targets = [f".#{name}" for name in names]
        options = DeployOptions(
            boot=boot,
            magic_rollback=magic_rollback,
            # `nix flake check` would evaluate every configuration of the test fleet.
            skip_checks=True,
            nix_args=nix_args,
            env=env,
        )
        return run_deploy(
            self.deployer,
            targets if len(targets) > 1 else targets[0],
            options,
            workdir=FLEET_DIR,
            timeout=self.seconds(1200),
        )

    def deploy_ok(self, configs: str | Sequence[str], **kwargs) -> DeployResult:
        result = self.deploy(configs, **kwargs)
        if not result.ok:
            raise DeployFailed(f"deploy of {configs} failed: {result.summary()}\n{tail(result.log)}")
        return result

    def baseline(self, *nodes: str) -> nixos.SystemState:
        """The first deploy of every scenario: v1 (the booted system) through deploy-rs, so
        later rollbacks have a deploy-rs generation to go back to. A checkpoint per set of
        nodes (`baseline-target`, `baseline-target-target2`): the first scenario that needs it
        deploys, later ones restore the fleet as that deploy left it. Returns the first node's
        state, read from the machine either way."""
        nodes = nodes or ("target",)

        def deploy_v1(directory) -> dict:
            self.ready()
            before = {node: self.state(node) for node in nodes}
            self.deploy_ok([f"{node}-v1" for node in nodes])
            for node in nodes:
                state = self.state(node)
                # A test VM may have no system profile before the first `nix-env --set`
                # (docs/nixos-facts.md).
                expected = max(before[node].newest_generation, 0) + 1
                assert state.newest_generation == expected, (
                    f"{node}: the baseline deploy did not add a generation: {state}"
                )
            return {node: self.state(node).newest_generation for node in nodes}

        generations = self.fleet.checkpoint("baseline-" + "-".join(nodes), deploy_v1)
        states = {node: self.state(node) for node in nodes}
        for node in nodes:
            assert states[node].newest_generation == generations[node], (node, states[node])
            assert states[node].current_generation == states[node].newest_generation
            assert self.variant(node) == "v1"
        return states[nodes[0]]

    def profile_path(self, config: str, profile: str = "system") -> str:
        """The store path deploy-rs deploys for a configuration (its activatable closure)."""
        return self.deployer.succeed(
            f"cd {FLEET_DIR} && nix eval --offline --raw "
            f"{shlex.quote(f'.#deploy.nodes.{config}.profiles.{profile}.path')}",
            timeout=self.seconds(600),
        ).strip()

    def toplevel(self, config: str) -> str:
        """The NixOS toplevel of a configuration: what the probes call its system."""
        return self.deployer.succeed(
            f"cd {FLEET_DIR} && nix eval --offline --raw "
            f"{shlex.quote(f'.#nixosConfigurations.{config}.config.system.build.toplevel')}",
            timeout=self.seconds(600),
        ).strip()

    def sign_for_deploy(self, config: str, key_file: str = "/root/ci-signing-key.sec") -> list[str]:
        """Sign a main deploy's closure on the deployer with exactly the command CI runs
        (ci/deploy-plan's "sign", as the deploy job's signing step would); returns that argv."""
        plan = subprocess.run(
            [sys.executable, str(REPO / "ci" / "deploy-plan"), "--branch", "main",
             "--hosts-json", json.dumps([config]), "--signing-key-file", key_file],
            capture_output=True, text=True, timeout=60, check=True,
        )
        argv = json.loads(plan.stdout)["sign"]
        self.deployer.succeed(f"cd {FLEET_DIR} && {shlex.join(argv)} --offline >&2", timeout=self.seconds(600))
        return argv

    def push_to_cache(self, paths: Sequence[str]) -> None:
        """`nix copy` from the deployer into the cache node's store (root over SSH), as CI does."""
        cache.copy_to_cache(self.deployer, "ssh://root@cache", paths, unsigned=True,
                            ssh_options=shlex.split(SSH_OPTIONS), timeout=self.seconds(900))

    # -- what the targets are ------------------------------------------------------------

    def state(self, node: str) -> nixos.SystemState:
        return nixos.probe_system(self.fleet[node])

    def wait_for_state(
        self, node: str, done: Callable[[nixos.SystemState], bool], timeout: float, what: str
    ) -> nixos.SystemState:
        deadline = time.monotonic() + self.seconds(timeout)
        state = self.state(node)
        while not done(state):
            if time.monotonic() > deadline:
                raise AssertionError(f"{node}: {what} within {self.seconds(timeout):.0f} s; state: {state}")
            time.sleep(2)
            state = self.state(node)
        return state

    def variant(self, node: str) -> str:
        """Which variant the running system is (its /etc/ndh-variant)."""
        return self.fleet[node].succeed("cat /etc/ndh-variant").strip()

    def valid_paths(self, node: str, paths: Sequence[str]) -> set[str]:
        return set(paths) - cache.invalid_paths(self.fleet[node], paths)

    def closure(self, path: str) -> list[str]:
        return cache.closure(self.deployer, path)

    def ssh(self, node: str, command: str, user: str = "deploy") -> tuple[int, str]:
        """Run `command` on `node` over SSH from the deployer, as deploy-rs reaches it."""
        return self.deployer.execute(
            f"ssh {SSH_OPTIONS} {user}@{node} {shlex.quote(command)} 2>&1",
            timeout=self.seconds(60),
        )

    def ssh_answers(self, node: str) -> bool:
        status, _ = self.ssh(node, "true")
        return status == 0

    # -- metrics -------------------------------------------------------------------------

    def metrics(self, node: str) -> dict[str, float]:
        status, text = self.fleet[node].execute(f"cat {TEXTFILE}")
        return parse_metrics(text) if status == 0 else {}

    def wait_for_metrics(self, node: str, expected: dict[str, int], timeout: float = 120) -> dict[str, float]:
        """Wait until the exporter (run by activation, its path unit or its timer) reports
        `expected`; the metrics must follow a deploy by themselves."""
        deadline = time.monotonic() + self.seconds(timeout)
        while True:
            metrics = self.metrics(node)
            if all(metrics.get(name) == value for name, value in expected.items()):
                return metrics
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{node}: the generation metrics did not become {expected} within "
                    f"{self.seconds(timeout):.0f} s; last: {metrics}"
                )
            time.sleep(2)

    def scrape(self, node: str, port: int = 9100) -> dict[str, float]:
        """node exporter's /metrics over HTTP (bash's /dev/tcp: no curl needed)."""
        text = self.fleet[node].succeed(
            f"exec 3<>/dev/tcp/127.0.0.1/{port}; "
            "printf 'GET /metrics HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3; cat <&3"
        )
        return parse_metrics(text)


def parse_metrics(text: str) -> dict[str, float]:
    """The nixos_* samples of a Prometheus text exposition (an HTTP reply's body, or a file)."""
    if text.startswith("HTTP/"):
        text = text.split("\r\n\r\n", 1)[-1]
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("nixos_")
    }


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def cache_signed(node_signatures: dict[str, tuple[str, ...]]) -> list[str]:
    """The paths signed by the fleet cache's key."""
    key = public_key("cache-signing-key.pub")
    return [path for path, sigs in node_signatures.items() if cache.signed_by(sigs, key)]
