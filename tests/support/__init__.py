"""What the self-tests share: the host's bash as a machine (`HostShell`), the tools a test
needs (`require`), the processes a test left (`processes_mentioning`), and scratch directories
owned like the harness's state directories (`scratch_dir`). Importable as
`support` from every test folder (pyproject's pytest `pythonpath`)."""
from .host_shell import HostShell
from .processes import processes_mentioning
from .scratch import scratch_dir, vm_scratch_dir
from .tools import require

__all__ = ["HostShell", "processes_mentioning", "require", "scratch_dir", "vm_scratch_dir"]
