"""What the self-tests share: the host's bash as a machine (`HostShell`), the tools a test
needs (`require`), and the processes a test left (`processes_mentioning`). Importable as
`support` from every test folder (pyproject's pytest `pythonpath`)."""
from .host_shell import HostShell
from .processes import processes_mentioning
from .tools import require

__all__ = ["HostShell", "processes_mentioning", "require"]
