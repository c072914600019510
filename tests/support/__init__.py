"""What the self-tests share: the host's bash as a machine (`HostShell`), the tools a test
needs (`require`) and a PATH without some (`path_without`), the processes a test left (`processes_mentioning`), scratch directories
whose name says which run owns them (`scratch_dir`; a later run removes those of a killed one),
and child pytest runs on a leash (`leash.Leash`, used by tests/conftest.py's `pytester`).
Importable as `support` from every test folder (pyproject's pytest `pythonpath`)."""
from .host_shell import HostShell
from .processes import processes_mentioning
from .scratch import scratch_dir, vm_scratch_dir
from .tools import path_without, require

__all__ = ["HostShell", "path_without", "processes_mentioning", "require", "scratch_dir", "vm_scratch_dir"]
