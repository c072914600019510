"""The rehearsal's observations read through a real backdoor shell: a micro VM holding a
directory laid out as a NixOS root. The micro image has no systemd, so `systemctl` and
`journalctl` are stand-ins written into the guest that print fixed lines; what is tested is
that the rehearsal's commands run in the guest's shell and their answers are read right. Its
busybox has no `readlink -e`, which the booted links (and the harness's probes) need: that
one is refused out loud there (the activation verdicts are proven on the host's coreutils,
test_twins_rehearse.py)."""
from __future__ import annotations

import pytest

from harness.fleet import FleetSpec, NodeSpec
from harness.nixos import NixosPaths, NixosProbeError, probe_system
from harness.twins import observe

TWIN = FleetSpec("twinobs", {"twin": NodeSpec(vlans=())})
ROOT = "/tmp/twinroot"
PATHS = NixosPaths.under(ROOT)
BASE, HEAD = f"{ROOT}/store/aaaa-nixos-system-twin", f"{ROOT}/store/bbbb-nixos-system-twin"

LAYOUT = f"""
for s in {BASE} {HEAD}; do
  mkdir -p $s/k; echo 1 > $s/nixos-version; echo k > $s/k/bzImage; echo i > $s/initrd.img
  ln -sfn $s/k/bzImage $s/kernel; ln -sfn $s/initrd.img $s/initrd; ln -sfn $s/k $s/kernel-modules
done
mkdir -p {ROOT}/nix/var/nix/profiles {ROOT}/run
ln -sfn {BASE} {ROOT}/nix/var/nix/profiles/system-1-link
ln -sfn system-1-link {ROOT}/nix/var/nix/profiles/system
ln -sfn {BASE} {ROOT}/run/booted-system; ln -sfn {BASE} {ROOT}/run/current-system
printf '%s\\n' '#!/bin/sh' 'printf "nginx.service loaded failed failed nginx\\nacme-x.service loaded failed failed acme\\n"' > /bin/systemctl
printf '%s\\n' '#!/bin/sh' 'case " $* " in' \\
  '*" -t nixos "*) echo "switching to system configuration {HEAD}"; echo "switching to system configuration {BASE}" ;;' \\
  '*) echo "nginx[12]: bind() failed" ;;' 'esac' > /bin/journalctl
chmod +x /bin/systemctl /bin/journalctl
"""


@pytest.fixture
def twin(fleet):
    machine = fleet["twin"]
    machine.succeed(LAYOUT)
    return machine


@pytest.mark.fleet(TWIN)
def test_without_readlink_e_the_booted_links_are_refused_not_read_as_missing(twin):
    assert twin.execute("readlink -e /")[0] != 0  # busybox: no -e
    with pytest.raises(observe.ObservationError, match=r"twin: .* exited 3: 'needs readlink -e and dirname \(coreutils\)"):
        observe.booted_links(twin, PATHS)


@pytest.mark.fleet(TWIN)
def test_the_state_probe_refuses_a_readlink_without_e_too(twin):
    # The same guard in the harness's probe: before, it checked only that readlink existed, and
    # on busybox read every link as absent.
    with pytest.raises(NixosProbeError, match=r"exited with 3; output: 'needs readlink -e and dirname \(coreutils\)"):
        probe_system(twin, PATHS)


@pytest.mark.fleet(TWIN)
def test_failed_units_and_their_journal_are_read_from_the_guest(twin):
    units = observe.failed_units(twin)
    assert units == ("nginx.service", "acme-x.service")
    assert observe.journal_tail(twin, units).strip() == "nginx[12]: bind() failed"
    assert observe.journal_tail(twin, ()) == ""


@pytest.mark.fleet(TWIN)
def test_a_switch_is_found_in_the_activation_log_by_the_exact_system(twin):
    assert observe.switched_to(twin, HEAD) and observe.switched_to(twin, BASE)
    assert not observe.switched_to(twin, HEAD[:-1])  # a prefix is another system
    twin.succeed("printf '%s\\n' '#!/bin/sh' 'true' > /bin/journalctl")
    assert not observe.switched_to(twin, HEAD)


@pytest.mark.fleet(TWIN)
def test_no_failed_units_is_an_empty_answer(twin):
    twin.succeed("printf '%s\\n' '#!/bin/sh' 'true' > /bin/systemctl")
    assert observe.failed_units(twin) == ()
