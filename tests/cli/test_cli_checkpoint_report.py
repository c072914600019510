"""What `deploy-harness status` says about a kept fleet's checkpoints, from the records alone
(no VM; test_cli_checkpoints.py shows it on a real fleet): when each was made, what it starts
from, that its value is kept, its fingerprint's first digits; a record of an older version and
an unreadable file."""
from __future__ import annotations

import json

from harness.cli import checkpoint_report
from harness.keep.records import FleetRecord


def write(directory, records: dict) -> FleetRecord:
    (directory / "checkpoints.json").write_text(json.dumps(records))
    return FleetRecord("pair", directory, status="up")


def test_each_checkpoint_with_its_chain_its_value_and_its_fingerprint(tmp_path):
    record = write(tmp_path, {
        "ready": {"fingerprint": "a" * 64, "value": None, "parents": [], "setup_s": 41.25, "made": 0},
        "baseline": {"fingerprint": "0123456789abcdef" * 4, "value": {"generation": 2},
                     "parents": ["ready", "gone-one"], "setup_s": 3.0, "made": 86400.5},
    })
    lines = checkpoint_report.status_lines(record)
    assert lines[0] == ("  checkpoint baseline     made 1970-01-02 00:00:00 UTC (setup 3.0 s), starts from "
                        "ready, gone-one (gone), value kept (17 bytes of JSON), fingerprint 0123456789ab")
    assert lines[1].startswith("  checkpoint ready        made 1970-01-01 00:00:00 UTC (setup 41.2 s), value kept")
    assert "`deploy-harness restore --all NAME --fleet pair` goes back to one" in lines[2]
    assert checkpoint_report.names(record) == "baseline, ready"


def test_a_record_of_an_older_version_has_no_time(tmp_path):
    record = write(tmp_path, {"old": {"fingerprint": "f" * 64, "value": 1, "parents": [], "setup_s": 1}})
    assert "checkpoint old          made at a time not recorded (setup 1.0 s)" in checkpoint_report.status_lines(record)[0]


def test_no_checkpoints_no_lines_and_an_unreadable_file_says_so(tmp_path):
    assert checkpoint_report.status_lines(FleetRecord("pair", tmp_path)) == []
    (tmp_path / "checkpoints.json").write_text("{half")
    lines = checkpoint_report.status_lines(FleetRecord("pair", tmp_path))
    assert len(lines) == 1 and "cannot be read" in lines[0] and "delete it to start afresh" in lines[0]
    assert checkpoint_report.names(FleetRecord("pair", tmp_path)) == "none readable"
