"""A failed VM test's JUnit XML carries its evidence: the artifact paths as properties and the
tails of each node's serial log and transcript as system-out. Through pytester, a real child
pytest run with a real micro VM."""
import xml.etree.ElementTree as ET

FAILING_VM_TEST = """
from harness.fleet import FleetSpec, NodeSpec
import pytest

ONE = FleetSpec("junit", {"node": NodeSpec(vlans=())})

@pytest.mark.fleet(ONE)
def test_fails(fleet):
    fleet["node"].succeed("echo serial-evidence > /dev/ttyS0; echo transcript-evidence")
    fleet["node"].succeed("ls /no-such-file")
"""


def test_junit_xml_of_a_failed_vm_test_holds_paths_and_tails(pytester, tmp_path):
    pytester.makepyfile(test_fails=FAILING_VM_TEST)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--vm-accel=tcg", "--vm-artifacts", str(tmp_path / "arts"),
        "--junitxml", str(tmp_path / "junit.xml"), "-o", "junit_logging=system-out",
    )
    result.assert_outcomes(failed=1)
    case = ET.parse(tmp_path / "junit.xml").getroot().find(".//testcase")
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert properties["vm-node-serial.log"].endswith("node.serial.log")
    assert properties["vm-node-transcript.log"].endswith("node.transcript.log")
    assert (tmp_path / "arts").is_dir() and all(p.startswith(str(tmp_path / "arts")) for p in properties.values())
    system_out = case.findtext("system-out")
    assert "serial-evidence" in system_out, "the serial tail is in system-out"
    assert "transcript-evidence" in system_out, "the transcript tail is in system-out"
    failure = case.find("failure").get("message") + case.findtext("failure")
    assert "No such file or directory" in failure, "the command's stderr is in the failure"
