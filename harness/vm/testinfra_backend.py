"""A testinfra backend whose commands run over a machine's shell, so
`machine.testinfra.file("/etc/hosts").contains("beta")` works without SSH. Works with any
object that has a `name`, `execute_bytes` and `last_stderr` (a GuestShell); it imports none."""
from __future__ import annotations

from typing import Any

import testinfra.host
from testinfra.backend import base


class BackdoorBackend(base.BaseBackend):
    NAME = "nixos-backdoor"

    def __init__(self, machine: Any, *args: Any, **kwargs: Any) -> None:
        self.machine = machine
        super().__init__(machine.name, *args, **kwargs)

    def run(self, command: str, *args: str, **kwargs: Any) -> base.CommandResult:
        command = self.get_command(command, *args)
        status, stdout = self.machine.execute_bytes(command)
        # The engine keeps each command's stderr apart; reading it costs a round trip.
        stderr = self.machine.last_stderr().encode("utf-8", "surrogateescape")
        return self.result(status, self.encode(command), stdout, stderr)

    def get_encoding(self) -> str:
        return "utf-8"  # no Python in the guest to ask; NixOS and the micro image are UTF-8

    def get_hostname(self) -> str:
        return self.machine.name


def host_for(machine: Any) -> testinfra.host.Host:
    backend = BackdoorBackend(machine)
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host
