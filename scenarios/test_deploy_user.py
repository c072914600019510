"""The deploy user: it can do exactly what deploy-rs needs (copy closures, run activate-rs and
remove the canary through sudo) and nothing else through sudo; the seed's version of it (sudo
only for nix-env --set and switch-to-configuration, no login shell) makes deploy-rs fail.
Restricted sudo is an accident guard, not isolation (docs/fleet.md, "Trust model")."""
import shlex

import pytest

from scenario_fleet import CANARY, NIXOS_FLEET, tail

pytestmark = [pytest.mark.nixos, pytest.mark.fleet(NIXOS_FLEET)]


def test_the_deploy_user_may_do_what_deploy_rs_needs_and_no_more(homelab):
    homelab.baseline("target")
    activatable = homelab["target"].succeed("readlink -e /nix/var/nix/profiles/system").strip()
    assert "-activatable-" in activatable, activatable

    allowed = {
        "activate-rs": f"{activatable}/activate-rs activate {activatable}",
        "canary rm": f"/run/current-system/sw/bin/rm {CANARY}",
    }
    for what, command in allowed.items():
        status, out = homelab.ssh("target", f"sudo -n -l {command}")
        assert status == 0, f"deploy may not run {what} through sudo: {out}"

    refused = {
        "read /etc/shadow": "sudo -n cat /etc/shadow",
        "a root shell": "sudo -n -s true",
        "bash as root": "sudo -n bash -c true",
        # `sudo -l CMD` only asks whether CMD is allowed: a rule that is too broad fails the
        # test without deleting anything.
        "rm a real canary and another file": f"sudo -n -l /run/current-system/sw/bin/rm {CANARY} /etc/passwd",
        "rm another file": "sudo -n -l /run/current-system/sw/bin/rm /etc/passwd",
        "write /etc": "touch /etc/ndh-deploy-user-was-here",
    }
    for what, command in refused.items():
        status, out = homelab.ssh("target", command)
        assert status != 0, f"deploy could {what}: {out}"
    homelab["target"].fail("test -e /etc/ndh-deploy-user-was-here")
    homelab["target"].succeed("test -s /etc/passwd")


def test_the_seed_deploy_user_makes_deploy_rs_fail(homelab):
    homelab.baseline("target")
    # The last deploy the good user allows: it installs the seed's user. Magic rollback off,
    # since confirming would already need the new (broken) login.
    homelab.deploy_ok("target-seed-deploy-user", magic_rollback=False)
    before = homelab.state("target")
    assert homelab.variant("target") == "seed-deploy-user"

    result = homelab.deploy("target-v2")
    print(f"deploy-rs against the seed's deploy user ({result.summary()}):\n{tail(result.log)}")
    assert not result.ok
    # ssh runs `nix copy`'s remote end through nologin, which prints this and exits.
    assert "not available" in result.log or result.push_failed_node == "target-v2", tail(result.log)
    after = homelab.state("target")
    assert after.current_generation == before.current_generation
    assert after.newest_generation == before.newest_generation
    assert homelab.variant("target") == "seed-deploy-user"
    status, out = homelab.ssh("target", "true")
    assert status != 0 and "not available" in out, shlex.quote(out)
