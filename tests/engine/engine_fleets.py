"""Fleet specs shared by the engine's self-tests (micro image)."""
from harness.fleet import FleetSpec, NodeSpec

# Two nodes on VLAN 1; alpha also forwards guest port 8080 to 127.0.0.1 on the host and may
# be rebooted.
PAIR = FleetSpec(
    "pair",
    {
        "alpha": NodeSpec(vlans=(1,), allow_reboot=True, forward_ports=(8080,)),
        "beta": NodeSpec(vlans=(1,)),
    },
)
# One node for tests that kill or hang their machine.
SOLO = FleetSpec("solo", {"solo": NodeSpec(vlans=())})
