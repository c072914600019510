"""The errors of kept fleets: each message says why and what to do."""


class FleetStateError(RuntimeError):
    """A kept fleet cannot be used as asked."""


class NodeBusy(FleetStateError):
    """Another process drives the node."""


class NoFleet(FleetStateError):
    """No fleet matches: nothing to work on (for `down`: nothing to stop)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what}. Start one with `deploy-harness up`.")
        self.what = what
