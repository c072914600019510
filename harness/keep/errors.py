"""The errors of kept fleets: each message says why and what to do."""


class FleetStateError(RuntimeError):
    """A kept fleet cannot be used as asked."""


class NodeBusy(FleetStateError):
    """Another process drives the node."""
