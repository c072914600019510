"""Secrets with sops-nix: a target with a fixed test host key receives a secret encrypted at
build time to that key (test/fleet/secrets); after the deploy the secret is at its path with its
owner, mode and content; the deployer, standing for CI, cannot decrypt it; its plaintext is in
no store path of the deployer or the target; and a deploy that is rolled back leaves the
previous secret in place."""
import base64
import shlex

import pytest

from harness.twins import twin_fleet
from scenario_fleet import KEYS, NIXOS_FLEET

pytestmark = [pytest.mark.nixos, pytest.mark.fleet(NIXOS_FLEET)]

SECRET = "/run/secrets/ndh-test-secret"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
OWNER = "ndh-secret-reader"


def install_test_host_key(machine) -> None:
    """The fixed test host key, written over the backdoor: never through Nix, so it is in no
    store (test/fleet/keys/default.nix). sshd's own generated key is replaced. The same lines
    write it on twins."""
    for line in twin_fleet.host_key_commands(KEYS, HOST_KEY):
        machine.succeed(line)


def installed_secret(machine) -> tuple[str, str]:
    """(owner group mode, sha256) of the decrypted secret, read as its owner."""
    stat = machine.succeed(f"stat -L -c '%U %G %a' {SECRET}").strip()
    digest = machine.succeed(f"runuser -u {OWNER} -- sha256sum {SECRET}").split()[0]
    return stat, digest


def plaintext_in_store(machine, plaintext: str, timeout: float) -> list[str]:
    """Store files containing `plaintext` (the pattern goes through a file under /run, not a
    command line or the store)."""
    pattern = "/run/ndh-secret-pattern"
    encoded = base64.b64encode(plaintext.encode()).decode()
    machine.succeed(f"umask 077; printf %s {encoded} | base64 -d > {pattern}")
    try:
        _, found = machine.execute(f"grep -rlsF --devices=skip -f {pattern} /nix/store", timeout=timeout)
    finally:
        machine.succeed(f"rm -f {pattern}")
    return found.split()


def test_a_secret_reaches_its_host_and_nobody_else(homelab):
    target, deployer = homelab["target"], homelab.deployer
    homelab.baseline("target")
    install_test_host_key(target)

    homelab.deploy_ok("target-secret-a")
    assert homelab.variant("target") == "secret-a"
    with_a = homelab.state("target").current_generation
    expected_a = target.succeed("cat /etc/ndh-secret-sha256").strip()
    stat, digest = installed_secret(target)
    assert stat == f"{OWNER} {OWNER} 440"
    assert digest == expected_a, "the target decrypted something else than what was encrypted"
    assert target.execute(f"runuser -u nobody -- cat {SECRET}")[0] != 0, "mode 0440: others cannot read it"

    # The deployer has the encrypted file (in the variant's closure), sops, and its keys: sops's
    # defaults (~/.config/sops/age, ~/.ssh/id_ed25519) and the SSH deploy key. None is a recipient.
    plaintext = target.succeed(f"cat {SECRET}").strip()
    assert len(plaintext) >= 24
    sops_file = target.succeed("readlink -f /etc/ndh-secret.sops").strip()
    deployer.succeed(f"test -f {shlex.quote(sops_file)}")
    for environment in ("", "SOPS_AGE_SSH_PRIVATE_KEY_FILE=/root/.ssh/id_ecdsa"):
        status, output = deployer.execute(
            f"{environment} HOME=/root sops --decrypt --input-type binary --output-type binary "
            f"{shlex.quote(sops_file)} 2>&1"
        )
        assert status != 0 and plaintext not in output, (
            f"the deployer decrypted the secret ({environment or 'default keys'}): {output[-500:]}"
        )

    # The plaintext is in no store path, on the deployer or on the target.
    for machine in (target, deployer):
        found = plaintext_in_store(machine, plaintext, timeout=homelab.seconds(900))
        assert found == [], f"the plaintext is in the store of {machine.name}: {found}"

    # Secret B with a unit that fails: deploy-rs rolls the target back, and secret A is back.
    expected_b = deployer.succeed(
        f"cat {shlex.quote(homelab.profile_path('target-secret-b-failing'))}/etc/ndh-secret-sha256"
    ).strip()
    assert expected_b != expected_a
    result = homelab.deploy("target-secret-b-failing")
    assert not result.ok, "the failing unit must make the deploy fail"
    homelab.wait_for_state(
        "target", lambda s: s.current_generation == with_a and s.newest_generation == with_a, timeout=240,
        what=f"did not return to generation {with_a} (secret A) with the new one deleted",
    )
    assert homelab.variant("target") == "secret-a"
    assert installed_secret(target) == (f"{OWNER} {OWNER} 440", expected_a)
