"""The fleet's secrets keys, with the real age tools (Debian's `age`): the ssh-to-age derivation
sops-nix uses agrees with age's own X25519 arithmetic; the fixed test host key round-trips; a
key that is not a recipient (the CI deploy key) decrypts nothing; and .sops.yaml's creation
rules give each deployable host's file to that host's key and the admins', and to nobody else."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from support import require
import ssh_to_age

REPO = Path(__file__).resolve().parents[2]
SOPS_YAML = REPO / ".sops.yaml"
HOST_KEYS = REPO / "secrets" / "host-keys"
TEST_KEY = REPO / "test" / "fleet" / "keys" / "target-host-ed25519"
HOSTS = sorted(p.name for p in (REPO / "hosts").iterdir() if p.is_dir())


def run(*argv: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, input=input, capture_output=True, timeout=60)


def age_encrypt(recipients: list[str], plaintext: bytes) -> bytes:
    require("age", package="age")
    args = ["age", "--encrypt"]
    for recipient in recipients:
        args += ["-r", recipient]
    result = run(*args, input=plaintext)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def age_decrypt(identity: Path, ciphertext: bytes) -> subprocess.CompletedProcess[bytes]:
    return run("age", "--decrypt", "-i", str(identity), input=ciphertext)


def ssh_keypair(directory: Path, name: str) -> Path:
    require("ssh-keygen", package="openssh-client")
    key = directory / name
    result = run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key))
    assert result.returncode == 0, result.stderr.decode()
    return key


def age_identity(directory: Path, ssh_private_key: Path) -> Path:
    identity = directory / f"{ssh_private_key.name}.age"
    identity.write_text(ssh_to_age.private_key_to_age(ssh_private_key.read_text()) + "\n")
    identity.chmod(0o600)
    return identity


# --- the derivation ------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", range(3))
def test_ssh_derived_identity_and_recipient_agree_with_age(tmp_path, attempt):
    """age-keygen -y computes the recipient of the identity derived from the private key: it
    must be the recipient derived from the public key (what .sops.yaml lists)."""
    require("age-keygen", package="age")
    key = ssh_keypair(tmp_path, f"host-{attempt}")
    identity = age_identity(tmp_path, key)
    from_age = run("age-keygen", "-y", str(identity))
    assert from_age.returncode == 0, from_age.stderr.decode()
    assert from_age.stdout.decode().strip() == ssh_to_age.public_key_to_age(key.with_suffix(".pub").read_text())


def test_ssh_to_age_refuses_other_key_types(tmp_path):
    require("ssh-keygen", package="openssh-client")
    key = tmp_path / "rsa"
    assert run("ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(key)).returncode == 0
    with pytest.raises(ssh_to_age.KeyError_, match="ssh-ed25519"):
        ssh_to_age.public_key_to_age(key.with_suffix(".pub").read_text())
    with pytest.raises(ssh_to_age.KeyError_):
        ssh_to_age.private_key_to_age(key.read_text())


# --- round trips ---------------------------------------------------------------------------------


def test_the_fixed_test_host_key_round_trips(tmp_path):
    recipient = ssh_to_age.public_key_to_age(TEST_KEY.with_suffix(".pub").read_text())
    identity = age_identity(tmp_path, TEST_KEY)
    ciphertext = age_encrypt([recipient], b"ndh test secret\n")
    assert b"ndh test secret" not in ciphertext
    decrypted = age_decrypt(identity, ciphertext)
    assert decrypted.returncode == 0, decrypted.stderr.decode()
    assert decrypted.stdout == b"ndh test secret\n"


def test_a_key_that_is_not_a_recipient_decrypts_nothing(tmp_path):
    """CI's deploy key (an SSH key like any host's) is no recipient: age refuses."""
    host = ssh_keypair(tmp_path, "host")
    ci = ssh_keypair(tmp_path, "ci-deploy")
    ciphertext = age_encrypt([ssh_to_age.public_key_to_age(host.with_suffix(".pub").read_text())], b"db password\n")
    refused = age_decrypt(age_identity(tmp_path, ci), ciphertext)
    assert refused.returncode != 0
    assert b"no identity matched any of the recipients" in refused.stderr
    # The SSH key itself, as age reads SSH keys natively, does not open it either.
    assert age_decrypt(ci, ciphertext).returncode != 0
    assert age_decrypt(age_identity(tmp_path, host), ciphertext).stdout == b"db password\n"


# --- .sops.yaml ------------------------------------------------------------------------------------


def sops_config() -> tuple[dict[str, str], list[dict]]:
    """(anchors: name -> recipient, creation rules with aliases resolved)."""
    yaml = pytest.importorskip("yaml", reason="PyYAML is missing from this Python: pip install -e '.[test]' into .venv (ci/bootstrap does)")
    text = SOPS_YAML.read_text()
    anchors = dict(re.findall(r"^\s*-\s*&(\S+)\s+(age1\S+)\s*$", text, re.MULTILINE))
    parsed = yaml.safe_load(text)
    assert sorted(anchors.values()) == sorted(parsed["keys"]), "every key in `keys` has an anchor"
    return anchors, parsed["creation_rules"]


def deployable_hosts() -> list[str]:
    """Hosts whose folder keeps the deploy user hosts/common.nix enables (tests/flake evaluates
    the same with Nix)."""
    return [h for h in HOSTS if not re.search(r"^\s*homelab\.users\.deploy\.enable\s*=\s*false;",
                                              (REPO / "hosts" / h / "default.nix").read_text(), re.MULTILINE)]


def rule_for(rules: list[dict], path: str) -> dict | None:
    """sops uses the first rule whose path_regex matches."""
    return next((rule for rule in rules if re.search(rule["path_regex"], path)), None)


def recipients(rule: dict) -> set[str]:
    assert set(rule) == {"path_regex", "key_groups"}, f"only age key groups: {rule}"
    assert len(rule["key_groups"]) == 1, "one key group: any one recipient decrypts"
    (group,) = rule["key_groups"]
    assert set(group) == {"age"}, group
    return set(group["age"])


def test_sops_yaml_gives_each_host_its_own_file():
    anchors, rules = sops_config()
    admins = {value for name, value in anchors.items() if name.startswith("admin_")}
    assert admins, ".sops.yaml names at least one admin key"
    deployable = deployable_hosts()
    assert "Production" in deployable and "Template" not in deployable
    for host in deployable:
        rule = rule_for(rules, f"secrets/{host}.yaml")
        assert rule is not None, f"no creation rule for secrets/{host}.yaml"
        assert recipients(rule) == admins | {anchors[f"host_{host}"]}, host
        for other in HOSTS:
            if other != host:
                assert not re.search(rule["path_regex"], f"secrets/{other}.yaml"), (host, other)
    for rule in rules:
        assert any(re.search(rule["path_regex"], f"secrets/{h}.yaml") for h in deployable), \
            f"rule {rule['path_regex']} matches no deployable host's file"
    assert rule_for(rules, "secrets/Template.yaml") is None, "Template is never deployed"
    assert {name for name in anchors if name.startswith("host_")} == {f"host_{h}" for h in deployable}


def test_sops_yaml_host_keys_are_derived_from_their_ssh_host_keys():
    anchors, _ = sops_config()
    published = sorted(p.stem for p in HOST_KEYS.glob("*.pub"))
    assert published == deployable_hosts(), "one ssh_host_ed25519_key.pub per deployable host"
    for host in published:
        line = (HOST_KEYS / f"{host}.pub").read_text()
        assert ssh_to_age.public_key_to_age(line) == anchors[f"host_{host}"], host


def test_sops_yaml_recipients_are_admins_and_hosts_only_never_ci(tmp_path):
    anchors, rules = sops_config()
    assert all(name.startswith(("admin_", "host_")) for name in anchors), anchors
    used = set().union(*(recipients(rule) for rule in rules))
    assert used == set(anchors.values()), "every listed key is used, every used key is listed"
    # The deploy keys (CI's DEPLOY_SSH_KEY among them) are SSH keys: none may be a recipient.
    require("nix-instantiate", package="nix-bin")
    evaluated = run("nix-instantiate", "--eval", "--strict", "--json", str(REPO / "hosts" / "deploy-keys.nix"))
    assert evaluated.returncode == 0, evaluated.stderr
    deploy_keys = json.loads(evaluated.stdout)
    # The list is empty until operators add their keys: the check runs on every key it holds, and
    # on a freshly made one, so that the conversion itself runs whatever the list holds.
    require("ssh-keygen", package="openssh-client")
    fresh = tmp_path / "fresh"
    made = run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fresh", "-f", str(fresh))
    assert made.returncode == 0, made.stderr
    for key in [*deploy_keys, fresh.with_suffix(".pub").read_text().strip()]:
        if key.startswith("ssh-ed25519 "):
            recipient = ssh_to_age.public_key_to_age(key)
            assert recipient.startswith("age1"), recipient
            assert recipient not in used, f"deploy key {key.split()[-1]} is a sops recipient"
    test_key = ssh_to_age.public_key_to_age(TEST_KEY.with_suffix(".pub").read_text())
    assert test_key not in used, "the test fleet's host key (in this repository) must never protect a real secret"


def test_sops_yaml_recipients_are_keys_age_accepts():
    _, rules = sops_config()
    for rule in rules:
        ciphertext = age_encrypt(sorted(recipients(rule)), b"probe\n")
        assert ciphertext.count(b"-> X25519 ") == len(recipients(rule))


def test_test_and_placeholder_keys_say_what_they_are():
    assert "TEST ONLY" in TEST_KEY.with_suffix(".pub").read_text()
    placeholders = [h for h in deployable_hosts() if "placeholder" in (HOST_KEYS / f"{h}.pub").read_text()]
    if placeholders:
        assert "PLACEHOLDERS" in SOPS_YAML.read_text(), f"{placeholders}: .sops.yaml must say its keys are placeholders"
