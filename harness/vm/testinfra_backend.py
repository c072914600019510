"""A testinfra backend whose commands run over a machine's shell, so
`machine.testinfra.file("/etc/hosts").contains("beta")` works without SSH. Works with any
object that has a `name` and `execute_sh` (a GuestShell); it imports none.

Commands run as testinfra's local backend runs them (`/bin/sh -c`, exit status, stdout and
stderr byte for byte), not as the driver's verbs do: testinfra's modules are written for
plain `sh` (`md5sum FILE | cut ...` must not fail under pipefail)."""
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
        status, stdout, stderr = self.machine.execute_sh(command)
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
