"""Machine lifecycle, snapshots, networking and the NixOS-test-driver verbs on real micro VMs."""
import socket
import time
import urllib.request

import pytest

from harness.images import micro
from harness.vm import CommandFailed, Machine, MachineError, start_all
from engine_fleets import PAIR


@pytest.mark.fleet(PAIR)
def test_nodes_reach_each_other_by_name_on_the_vlan(fleet):
    alpha, beta = fleet["alpha"], fleet["beta"]
    assert "192.168.1.2 beta" in alpha.succeed("cat /etc/hosts")
    assert beta.succeed("hostname") == "beta\n"
    assert "192.168.1.1/24" in alpha.succeed("ip -4 addr show eth1")
    alpha.succeed("ping -c 1 -W 5 beta")
    beta.succeed("ping -c 1 -W 5 alpha")


@pytest.mark.fleet(PAIR)
def test_snapshot_keeps_what_came_before_and_drops_what_came_after(fleet):
    alpha = fleet["alpha"]
    alpha.succeed("echo before > /persist/before; echo mem > /tmp/before")
    alpha.snapshot("t1")
    alpha.succeed("echo after > /persist/after; echo mem > /tmp/after; rm /persist/before")
    alpha.restore("t1")
    assert alpha.succeed("cat /persist/before /tmp/before") == "before\nmem\n"
    alpha.fail("test -e /persist/after", "test -e /tmp/after")


@pytest.mark.fleet(PAIR)
def test_each_test_starts_pristine_part_one(fleet):
    fleet["beta"].succeed("echo dirty > /persist/dirty")


@pytest.mark.fleet(PAIR)
def test_each_test_starts_pristine_part_two(fleet):
    fleet["beta"].fail("test -e /persist/dirty")


@pytest.mark.fleet(PAIR)
def test_a_file_on_the_persistent_disk_survives_reboot(fleet):
    alpha = fleet["alpha"]
    alpha.succeed("echo kept > /persist/kept; echo lost > /tmp/lost")
    boot_id = alpha.succeed("cat /proc/sys/kernel/random/boot_id")
    alpha.reboot()
    assert alpha.succeed("cat /proc/sys/kernel/random/boot_id") != boot_id
    assert alpha.succeed("cat /persist/kept") == "kept\n"
    alpha.fail("test -e /tmp/lost")


@pytest.mark.fleet(PAIR)
def test_reboot_needs_allow_reboot(fleet):
    with pytest.raises(MachineError, match="allow_reboot"):
        fleet["beta"].reboot()


@pytest.mark.fleet(PAIR)
def test_shutdown_is_clean_and_start_boots_the_same_disk(fleet):
    beta = fleet["beta"]
    beta.succeed("echo durable > /persist/durable")
    beta.shutdown()
    assert not beta.booted
    beta.start()
    assert beta.succeed("cat /persist/durable") == "durable\n"


@pytest.mark.fleet(PAIR)
def test_crash_stops_qemu_at_once(fleet):
    beta = fleet["beta"]
    pid = beta.pid
    beta.crash()
    assert not beta.booted
    with pytest.raises(ProcessLookupError):
        import os
        os.kill(pid, 0)
    with pytest.raises(MachineError, match="not running"):
        beta.succeed("true")


@pytest.mark.fleet(PAIR)
def test_monitor_commands(fleet):
    assert "running" in fleet["alpha"].send_monitor_command("info status")


@pytest.mark.fleet(PAIR)
def test_wait_verbs(fleet):
    alpha = fleet["alpha"]
    alpha.succeed("(sleep 1; touch /tmp/later) >/dev/null 2>&1 &")
    alpha.wait_for_file("/tmp/later", timeout=30)
    alpha.wait_until_succeeds("test -e /tmp/later", timeout=5)
    alpha.succeed("(sleep 1; rm /tmp/later) >/dev/null 2>&1 &")
    alpha.wait_until_fails("test -e /tmp/later", timeout=30)
    with pytest.raises(CommandFailed, match="did not succeed within 1"):
        alpha.wait_until_succeeds("false", timeout=1)
    alpha.succeed("mkdir -p /tmp/www; httpd -p 7000 -h /tmp/www")
    alpha.wait_for_open_port(7000, timeout=30)
    alpha.succeed("killall httpd")
    alpha.wait_for_closed_port(7000, timeout=30)


@pytest.mark.fleet(PAIR)
def test_wait_for_unit_reads_systemctl_show(fleet):
    # The micro image has no systemd. This stand-in `systemctl` prints the ActiveState lines
    # `systemctl show` prints, from a file, to test how wait_for_unit reads them.
    alpha = fleet["alpha"]
    alpha.succeed(
        "cat > /bin/systemctl <<'EOF'\n#!/bin/sh\n"
        "case \"$*\" in *show*) cat /tmp/unit-state ;;\n"
        "  *list-jobs*) if [ -s /tmp/unit-jobs ]; then cat /tmp/unit-jobs; else echo 'No jobs running.'; fi ;; esac\nEOF\n"
        "chmod +x /bin/systemctl; echo ActiveState=activating > /tmp/unit-state; "
        "echo '1 x.service start running' > /tmp/unit-jobs"
    )
    alpha.succeed("(sleep 1; echo ActiveState=active > /tmp/unit-state) >/dev/null 2>&1 &")
    alpha.wait_for_unit("x.service", timeout=30)
    alpha.succeed("echo ActiveState=failed > /tmp/unit-state")
    with pytest.raises(CommandFailed, match='reached state "failed"'):
        alpha.wait_for_unit("x.service", timeout=30)
    alpha.succeed("echo ActiveState=inactive > /tmp/unit-state; : > /tmp/unit-jobs")
    with pytest.raises(CommandFailed, match="no pending jobs"):
        alpha.wait_for_unit("x.service", timeout=30)


@pytest.mark.fleet(PAIR)
def test_copy_from_host(fleet, tmp_path):
    alpha = fleet["alpha"]
    (tmp_path / "file.txt").write_bytes(b"line 1\n\x00\xff binary\n")
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "sub" / "x").write_text("x\n")
    (tmp_path / "tree" / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (tmp_path / "tree" / "run.sh").chmod(0o755)
    alpha.copy_from_host(tmp_path / "file.txt", "/persist/in/file.txt")
    alpha.copy_from_host(tmp_path / "tree", "/persist/tree")
    status, data = alpha.execute_bytes("cat /persist/in/file.txt")
    assert data == b"line 1\n\x00\xff binary\n"
    assert alpha.succeed("cat /persist/tree/sub/x; /persist/tree/run.sh") == "x\nran\n"


@pytest.mark.fleet(PAIR)
def test_testinfra_over_the_backdoor(fleet):
    host = fleet["alpha"].testinfra
    assert host.file("/etc/hosts").contains("beta")
    assert host.file("/persist").is_directory
    result = host.run("echo out; echo err >&2; exit 3")
    assert (result.rc, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert host.check_output("hostname") == "alpha"


@pytest.mark.fleet(PAIR)
def test_port_forward_is_on_host_loopback_only(fleet):
    alpha = fleet["alpha"]
    port = alpha.forwarded_port(8080)
    alpha.succeed("mkdir -p /tmp/www; echo hello > /tmp/www/index.html; httpd -p 8080 -h /tmp/www")
    alpha.wait_for_open_port(8080, timeout=30)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as reply:
        assert reply.read() == b"hello\n"
    # QEMU binds the forward to 127.0.0.1 only: nothing listens on the wildcard address.
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
    listeners = open("/proc/net/tcp").read()
    assert f":{port:04X} " in listeners and f"00000000:{port:04X} " not in listeners


@pytest.mark.fleet(PAIR)
def test_user_networking_is_restricted(fleet):
    # restrict=on: the guest cannot open connections through QEMU's user network, not even
    # to the host alias 10.0.2.2 (no traffic leaves QEMU).
    alpha = fleet["alpha"]
    alpha.fail("timeout 5 nc -w 3 10.0.2.2 22 </dev/null")


@pytest.mark.fleet(PAIR)
def test_transcript_and_serial_log(fleet):
    alpha = fleet["alpha"]
    alpha.succeed("echo transcript-marker")
    alpha.execute("echo serial-marker >&2")
    time.sleep(0.2)
    assert "transcript-marker" in alpha.transcript_path.read_text()
    alpha.wait_for_console_text("serial-marker", timeout=10)
    assert "serial-marker" in alpha.serial_tail()
    # Matched text is consumed, and what the console said before a restore is history.
    with pytest.raises(MachineError, match="no console text matching"):
        alpha.wait_for_console_text("serial-marker", timeout=1)
    alpha.snapshot("console")
    alpha.execute("echo before-restore >&2")
    alpha.restore("console")
    with pytest.raises(MachineError, match="no console text matching"):
        alpha.wait_for_console_text("before-restore", timeout=1)


def test_two_machines_booted_together_get_their_own_working_forwards(tmp_path):
    """QEMU binds each forward's host port itself (port 0): no window in which another process,
    or the other machine, can take it."""
    image = micro.ensure_micro_image()
    machines = []
    for number, name in enumerate(("one", "two"), 1):
        script = micro.write_start_script(tmp_path / name, image, micro.MicroNode(name, number, ()))
        machines.append(Machine(name, script, tmp_path / name, forward_ports=(8080,)))
    try:
        start_all(*machines)
        ports = [m.forwarded_port(8080) for m in machines]
        assert 0 not in ports and len(set(ports)) == 2
        for machine, port in zip(machines, ports):
            machine.succeed(f"mkdir -p /tmp/www; echo {machine.name} > /tmp/www/index.html; httpd -p 8080 -h /tmp/www")
            machine.wait_for_open_port(8080, timeout=30)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as reply:
                assert reply.read().decode() == f"{machine.name}\n"
    finally:
        for machine in machines:
            machine.close()
