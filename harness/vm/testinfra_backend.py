"""A testinfra backend whose commands run over a Machine's backdoor, so
`machine.testinfra.file("/etc/hosts").contains("beta")` works without SSH."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import testinfra.host
from testinfra.backend import base

if TYPE_CHECKING:
    from .machine import Machine

# The backdoor sends stderr to the serial console; testinfra wants it separately, so each run
# sends it to a file in the guest and reads it back (a second round trip, only for testinfra).
_STDERR_FILE = "/run/.ndh-testinfra-stderr"


class BackdoorBackend(base.BaseBackend):
    NAME = "nixos-backdoor"

    def __init__(self, machine: "Machine", *args: Any, **kwargs: Any) -> None:
        self.machine = machine
        super().__init__(machine.name, *args, **kwargs)

    def run(self, command: str, *args: str, **kwargs: Any) -> base.CommandResult:
        command = self.get_command(command, *args)
        status, stdout = self.machine.execute_bytes(f"{{ {command}\n}} 2>{_STDERR_FILE}")
        _, stderr = self.machine.execute_bytes(f"cat {_STDERR_FILE}; rm -f {_STDERR_FILE}")
        return self.result(status, self.encode(command), stdout, stderr)

    def get_encoding(self) -> str:
        return "utf-8"  # no Python in the guest to ask; NixOS and the micro image are UTF-8

    def get_hostname(self) -> str:
        return self.machine.name


def host_for(machine: "Machine") -> testinfra.host.Host:
    backend = BackdoorBackend(machine)
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host
