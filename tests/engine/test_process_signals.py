"""Children the harness starts (QEMU, vde_switch, start scripts) get default dispositions for
the signals that end or stop them, also when the run itself ignores them: under `nohup` (HUP)
or started with `&` by a shell without job control (INT, QUIT). No VM: a child that reports
its own /proc/self/status."""
from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import signal, subprocess, threading
    for number in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT):
        signal.signal(number, signal.SIG_IGN)  # as `nohup cmd &` leaves them
    from harness.vm import process

    def report(how, leash):
        child = process.spawn(["sed", "-n", "s/^SigIgn:[[:space:]]*//p", "/proc/self/status"],
                              leash=leash, stdout=subprocess.PIPE, text=True)
        print(how, child.communicate()[0].strip(), flush=True)

    report("leashed", True)
    report("kept", False)
    # Fleets start machines from worker threads too (harness.together).
    thread = threading.Thread(target=report, args=("thread", True))
    thread.start()
    thread.join()
    plain = subprocess.run(["sed", "-n", "s/^SigIgn:[[:space:]]*//p", "/proc/self/status"],
                           stdout=subprocess.PIPE, text=True)
    print("plain", plain.stdout.strip())
""")
HUP_INT_QUIT_TERM = 1 << 0 | 1 << 1 | 1 << 2 | 1 << 14  # bit n-1 for signal n


def test_children_start_with_default_signals_when_the_run_ignores_them():
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    ignored = {how: int(mask, 16) for how, mask in (line.split() for line in done.stdout.splitlines())}
    assert set(ignored) == {"leashed", "kept", "thread", "plain"}
    # What a child of the run would inherit without the harness's reset: the test is real.
    assert ignored["plain"] & HUP_INT_QUIT_TERM == 0b111
    for how in ("leashed", "kept", "thread"):
        assert ignored[how] & HUP_INT_QUIT_TERM == 0, f"{how}: {ignored[how]:#x}"
