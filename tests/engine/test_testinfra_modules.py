"""testinfra's modules over the backdoor, checked the way pytest-testinfra's own module and
backend tests check them on its hosts, for what a micro node can meet (busybox: no `getent`,
no `ls -q`, no `ps -o time`, and `ip` exits 2 for a missing device: so not Group,
File.listdir, Process or a missing Interface). Their commands are written for plain `sh`:
`md5sum FILE | cut ...`, `seq ... | grep -q ...`. Real micro VMs."""
import datetime

import pytest

from engine_fleets import SOLO

FOO_MD5 = "acbd18db4cc2f85cedef654fccc4a4d8"
FOO_SHA256 = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
# The micro image has no account files; these give `id` and `stat` names to find.
PASSWD = "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:100:gecos.comment:/home/user:/bin/sh\n"
GROUP = "root:x:0:\nusers:x:100:\nextra:x:200:user\n"


@pytest.fixture
def host(fleet):
    return fleet["solo"].testinfra


@pytest.mark.fleet(SOLO)
def test_command_results(host):
    assert host.check_output("true") == ""
    assert host.check_output("printf ''") == ""
    assert host.run("echo a b | grep -q %s", "a c").rc == 1  # the argument is quoted
    out = host.run("echo out && echo err >&2 && exit 42")
    assert (out.rc, out.stdout_bytes, out.stderr_bytes) == (42, b"out\n", b"err\n")
    assert host.run("commandthatdoesnotexist").rc == 127
    assert host.run("false").failed
    assert host.run("true").succeeded


@pytest.mark.fleet(SOLO)
def test_run_test_and_run_expect(host):
    # SystemdService.exists' shape: seq dies of SIGPIPE when grep has its line.
    assert host.run_test('seq 1 200000 | grep -q "^%s"', "1").rc == 0
    assert host.run_test('seq 1 20 | grep -q "^%s"', "x").rc == 1
    assert host.run_expect([0, 3], "exit 3").rc == 3
    with pytest.raises(AssertionError, match="Unexpected exit code 2"):
        host.run_test("exit 2")
    with pytest.raises(AssertionError, match="Unexpected exit code 1"):
        host.check_output("false")


@pytest.mark.fleet(SOLO)
def test_exists_and_find_command(host):
    assert host.exists("sh")
    assert not host.exists("no-such-command")
    assert host.find_command("bash") == "/bin/bash"  # busybox sh names its applets bare: `ls`
    with pytest.raises(ValueError, match="cannot find"):
        host.find_command("no-such-command")


@pytest.mark.fleet(SOLO)
def test_file(host):
    host.check_output("mkdir -p /tmp/d && printf foo > /tmp/d/f && chmod 600 /tmp/d/f")
    d = host.file("/tmp/d")
    assert d.is_directory and not d.is_file
    f = host.file("/tmp/d/f")
    assert f.exists and f.is_file
    assert f.content == b"foo" and f.content_string == "foo"
    assert (f.uid, f.gid, f.mode, f.size) == (0, 0, 0o600, 3)
    assert isinstance(f.mtime, datetime.datetime)
    assert f.contains("fo") and not f.contains("bar")
    assert not f.is_directory and not f.is_symlink and not f.is_pipe
    assert f.linked_to == "/tmp/d/f"
    assert (f.md5sum, f.sha256sum) == (FOO_MD5, FOO_SHA256)

    host.check_output("ln -fsn /tmp/d/f /tmp/d/l")
    link = host.file("/tmp/d/l")
    assert link.is_symlink and link.is_file
    assert link.linked_to == "/tmp/d/f" and link.linked_to == f
    assert f == host.file("/tmp/d/f") and d != f

    host.check_output("ln /tmp/d/f /tmp/d/h")
    hardlink = host.file("/tmp/d/h")
    assert hardlink.is_file and not hardlink.is_symlink
    assert hardlink.inode == f.inode

    host.check_output("rm -f /tmp/d/p && mkfifo /tmp/d/p")
    assert host.file("/tmp/d/p").is_pipe

    host.check_output("chmod 700 /tmp/d/f")
    assert f.is_executable and f.mode == 0o700


@pytest.mark.fleet(SOLO)
def test_a_missing_file(host):
    missing = host.file("/nonexistent")
    assert not missing.exists
    # `md5sum FILE | cut -d' ' -f1`: cut's status, "" (pipefail made this raise).
    assert (missing.md5sum, missing.sha256sum) == ("", "")


@pytest.mark.fleet(SOLO)
def test_user_and_file_owner(host):
    host.check_output("printf %%s %s > /etc/passwd && printf %%s %s > /etc/group", PASSWD, GROUP)
    assert host.user().name == "root"
    root = host.user("root")
    assert root.exists and (root.uid, root.gid, root.group) == (0, 0, "root")
    user = host.user("user")
    assert (user.uid, user.gid, user.group) == (1000, 100, "users")
    assert (user.gids, user.groups) == ([100, 200], ["users", "extra"])
    assert user.get_local_users == ["root", "user"]
    assert not host.user("zzzzzzzzzz").exists
    host.check_output("touch /tmp/owned")
    assert (host.file("/tmp/owned").user, host.file("/tmp/owned").group) == ("root", "root")


@pytest.mark.fleet(SOLO)
def test_system_info_sysctl_environment_and_mount_points(host):
    assert host.system_info.type == "linux"
    assert host.system_info.arch == host.check_output("uname -m")
    assert host.sysctl("kernel.hostname") == host.check_output("hostname") == "solo"
    assert isinstance(host.sysctl("kernel.panic"), int)
    assert host.environment().get("HOME") == "/root"
    proc = host.mount_point("/proc")
    assert proc.exists and proc.filesystem == "proc" and "rw" in proc.options
    assert not host.mount_point("/fake/mount").exists
    assert len([m for m in host.mount_point.get_mountpoints() if m.path == "/tmp"]) == 1


@pytest.mark.fleet(SOLO)
def test_interface_and_socket(host):
    assert host.interface("eth0").exists
    # (busybox `ip` exits 2 for a missing device, where iproute2's 1 makes `exists` False)
    assert "eth0" in host.interface.names()
    assert "10.0.2.15" in host.interface("eth0").addresses
    assert not host.socket("tcp://8080").is_listening
    host.check_output("mkdir -p /tmp/www && httpd -p 8080 -h /tmp/www")
    listening = [spec for spec in host.socket.get_listening_sockets() if spec.endswith(":8080")]
    assert listening and all(host.socket(spec).is_listening for spec in listening)
