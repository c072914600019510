"""A kept fleet's record keeps how each node was started (the image's accelerator form, the
waits' slowdown, the drive whose I/O is tuned), so a later process restarts a node as the first one did. No VM."""
from __future__ import annotations

from harness.keep.attach import machine_for
from harness.keep.records import FleetRecord, NodeRecord


def node(tmp_path, **extra) -> NodeRecord:
    return NodeRecord(
        name="alpha", pid=None, started=None, state_dir=str(tmp_path / "alpha"),
        start_script=str(tmp_path / "run-alpha-vm"), token="t0k", vlans={1: str(tmp_path / "vde1.ctl")},
        allow_reboot=True, accel="tcg", forwards=[(8080, 41234)], boot_timeout=1500, **extra,
    )


def test_the_accelerator_form_and_time_scale_survive_the_state_file(tmp_path):
    record = FleetRecord(name="pair", directory=tmp_path, status="up", accel="tcg",
                         nodes={"alpha": node(tmp_path, accel_options=["-machine", "accel=tcg"], time_scale=5.0,
                                              snapshot_drive="drive1")})
    again = FleetRecord.from_json(tmp_path, record.to_json())
    machine = machine_for(again.nodes["alpha"])
    assert machine.accel_options == ("-machine", "accel=tcg") and machine.time_scale == 5.0
    assert machine.snapshot_drive == "drive1"
    assert machine.forwarded_port(8080) == 41234 and machine.boot_timeout == 1500


def test_a_record_written_before_those_fields_gets_the_engine_s_defaults(tmp_path):
    data = FleetRecord(name="pair", directory=tmp_path, status="up", nodes={"alpha": node(tmp_path)}).to_json()
    for entry in data["nodes"].values():
        del entry["accel_options"], entry["time_scale"], entry["snapshot_drive"]
    machine = machine_for(FleetRecord.from_json(tmp_path, data).nodes["alpha"])
    assert machine.accel_options == ("-accel", "tcg") and machine.time_scale == 1.0
    assert machine.snapshot_drive is None  # QEMU's default disk I/O
