"""Several machines at one moment: paused together, acted on in parallel threads (QMP and the
backdoor are per machine), resumed together. Used by the fleet's snapshot and restore."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

from .vm import Machine


def each(machines: Sequence[Machine], action: Callable[[Machine], None]) -> dict[str, BaseException]:
    """Run `action` on every machine, each in its own thread; returns the failures by name."""
    failures: dict[str, BaseException] = {}

    def run(machine: Machine) -> None:
        try:
            action(machine)
        except BaseException as exc:  # reported to the caller, not lost in the thread
            failures[machine.name] = exc

    if len(machines) == 1:
        run(machines[0])
        return failures
    threads = [threading.Thread(target=run, args=(m,), name=f"ndh-{m.name}", daemon=True) for m in machines]
    for thread in threads:
        thread.start()
    interrupted: BaseException | None = None
    for thread in threads:
        # Joined even after Ctrl-C: a thread still inside savevm/loadvm owns its machine's QMP
        # connection, and resuming the machine meanwhile would interleave on it.
        while thread.is_alive():
            try:
                thread.join()
            except BaseException as exc:
                interrupted = interrupted or exc
    if interrupted is not None:
        raise interrupted
    return failures


def raise_first(failures: dict[str, BaseException], machines: Sequence[Machine]) -> None:
    """Raise the failure of the first machine (in fleet order) that failed, if any."""
    for machine in machines:
        if machine.name in failures:
            raise failures[machine.name]


@contextmanager
def paused(machines: Sequence[Machine]) -> Iterator[None]:
    """Every machine's CPUs stopped (QMP `stop`, one after the other: milliseconds), and all
    running again afterwards (`cont`, in parallel), also when the body failed. A machine whose QEMU died meanwhile
    is not resumed; its own error says why."""
    stopped: list[Machine] = []
    try:
        for machine in machines:
            machine.pause()
            stopped.append(machine)
        yield
    except BaseException:
        _resume(stopped)  # the body's error is the one to report
        raise
    errors = _resume(stopped)
    if errors:  # an interrupt or exit of any node before an ordinary error of an earlier one
        raise next((error for error in errors if not isinstance(error, Exception)), errors[0])


def _resume(machines: Sequence[Machine]) -> list[BaseException]:
    """`cont` on every running machine, in parallel: a guest that runs already takes CPU from
    the QEMUs still waiting for their `cont`. Returns every failure, in fleet order."""
    running = [machine for machine in machines if machine.booted]
    failures = each(running, lambda machine: machine.resume())
    return [failures[m.name] for m in running if m.name in failures]
