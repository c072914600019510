"""The twin booter's pieces that run in a guest's shell, on micro VMs standing in for a twin and
the deployer (no NixOS here): the test host key written over the backdoor before activation runs
again, a reboot through the machine API, `ssh_answers` asking from the deployer, `settle`
waiting for deploy-rs's activation to end. What NixOS itself does with them (sops-nix
decrypting, sshd, activate-rs) is not tested here: that needs real twins (docs/twins.md)."""
from __future__ import annotations

import base64
import hashlib
import shlex
import time
from pathlib import Path

import pytest

from harness import cache
from harness.fleet import FleetSpec, NodeSpec
from harness.twins import twin_fleet
from harness.twins.fleet_spec import DEPLOYER, TwinFacts

SPEC = FleetSpec("twinboot", {"Development": NodeSpec(vlans=(1,), allow_reboot=True), DEPLOYER: NodeSpec(vlans=(1,))})
FACTS = {"Development": TwinFacts("192.168.0.91", False, True, False, 2048, "192.168.0.91", "deploy", 2)}
KEY = "/tmp/ssh/ssh_host_ed25519_key"


def twins(fleet) -> twin_fleet.TwinsOnFleet:
    return twin_fleet.TwinsOnFleet(fleet, FACTS, Path("/nonexistent-head"), ["Development"])


@pytest.mark.fleet(SPEC)
def test_the_key_is_written_then_activation_runs_again(fleet):
    machine = fleet["Development"]
    # Activation's stand-in records the key it finds, so the order is proven.
    machine.succeed("mkdir -p /tmp/ssh && printf '%s\\n' '#!/bin/sh' "
                    f"'sha256sum {KEY} > /tmp/activated' > /tmp/activate && chmod +x /tmp/activate")
    twin_fleet.install_test_host_key(machine, key_path=KEY, activate="/tmp/activate")
    private = (twin_fleet.KEYS / "target-host-ed25519").read_bytes()
    public = (twin_fleet.KEYS / "target-host-ed25519.pub").read_bytes()
    assert machine.succeed("cat /tmp/activated").split()[0] == hashlib.sha256(private).hexdigest()
    assert machine.succeed(f"sha256sum {KEY}.pub").split()[0] == hashlib.sha256(public).hexdigest()
    assert machine.succeed(f"stat -c %a {KEY} {KEY}.pub").split() == ["600", "644"]
    assert machine.execute(f"ls {KEY}.new")[0] != 0


@pytest.mark.fleet(SPEC)
def test_a_failing_activation_is_an_error(fleet):
    machine = fleet["Development"]
    machine.succeed("mkdir -p /tmp/ssh")
    with pytest.raises(Exception, match="exit 4"):
        twin_fleet.install_test_host_key(machine, key_path=KEY, activate="sh -c 'exit 4'")


@pytest.mark.fleet(SPEC)
def test_ssh_answers_asks_from_the_deployer_as_the_deploy_user(fleet):
    deployer = fleet[DEPLOYER]
    assert twins(fleet).ssh_answers("Development") is False  # no ssh on the micro deployer
    deployer.succeed("printf '%s\\n' '#!/bin/sh' 'echo \"$@\" > /tmp/ssh-args' 'exit 0' > /bin/ssh && chmod +x /bin/ssh")
    assert twins(fleet).ssh_answers("Development") is True
    words = deployer.succeed("cat /tmp/ssh-args").split()
    assert words[-2:] == ["deploy@192.168.0.91", "true"] and "BatchMode=yes" in words
    deployer.succeed("printf '%s\\n' '#!/bin/sh' 'exit 255' > /bin/ssh")
    assert twins(fleet).ssh_answers("Development") is False


@pytest.mark.fleet(SPEC)
def test_settle_waits_for_the_activation_to_end(fleet):
    machine = fleet["Development"]
    machine.succeed("(sh -c 'sleep 4; true' activate-rs >/dev/null 2>&1 &)")
    machine.wait_until_succeeds(twin_fleet.still_activating_command(), timeout=10)
    started = time.monotonic()
    twins(fleet).settle()
    assert time.monotonic() - started >= 1
    assert machine.execute(twin_fleet.still_activating_command())[0] != 0


@pytest.mark.fleet(SPEC)
def test_reboot_goes_through_the_machine_and_comes_back(fleet):
    machine = fleet["Development"]
    before = machine.succeed("cat /proc/sys/kernel/random/boot_id").strip()
    twins(fleet).reboot("Development")
    assert machine.succeed("cat /proc/sys/kernel/random/boot_id").strip() != before


# Records what the push ran: nix's argv and the ssh options it got, one per line.
RECORDING_NIX = '#!/bin/sh\n{ printf "%s\\n" "$NIX_SSHOPTS"; printf "%s\\n" "$@"; } > /tmp/nix-ran\n'


@pytest.mark.fleet(SPEC)
def test_the_push_to_the_cache_twin_is_an_unsigned_nix_copy_over_ssh(fleet):
    """twin_lab.push_to_cache's second half, in a real guest shell with a recording `nix`."""
    deployer = fleet[DEPLOYER]
    encoded = base64.b64encode(RECORDING_NIX.encode()).decode()
    deployer.succeed(f"mkdir -p /tmp/bin && printf %s {encoded} | base64 -d > /tmp/bin/nix && chmod +x /tmp/bin/nix")
    paths = ["/nix/store/0000000000000000000000000000000a-one", "/nix/store/0000000000000000000000000000000b-two"]
    deployer.succeed("ln -sf /tmp/bin/nix /bin/nix")  # the micro image has no nix of its own
    cache.copy_to_cache(deployer, "ssh-ng://deploy@Ingress", paths, unsigned=True,
                        ssh_options=twin_fleet.SSH_OPTIONS)
    sshopts, *argv = deployer.succeed("cat /tmp/nix-ran").splitlines()
    # Unsigned (built here): a trusted receiver takes them only with --no-check-sigs.
    assert argv == ["--extra-experimental-features", "nix-command", "copy", "--no-check-sigs",
                    "--to", "ssh-ng://deploy@Ingress", *paths]
    assert shlex.split(sshopts) == list(twin_fleet.SSH_OPTIONS)
