"""The end-of-run check of tests/conftest.py fails a run that leaves a directory in /tmp, and
names it; a run that cleans up passes. Child pytest runs through pytester."""
import shutil
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def run_child(pytester, body: str):
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    pytester.makepyfile(test_child=body)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o", f"pythonpath={TESTS}")


def test_a_run_that_leaves_a_scratch_directory_fails_and_names_it(pytester):
    result = run_child(pytester, """
from support import scratch_dir

def test_leaks():
    print("LEAKED", scratch_dir("leak"))
""")
    leaked = [line.split()[-1] for line in result.outlines if line.startswith("LEAKED")] or [
        word.rstrip(",") for line in result.outlines if "self-tests left" in line for word in line.split() if "/tmp/ndh-leak-" in word]
    try:
        assert result.ret == 1
        result.stdout.fnmatch_lines(["*self-tests left 1 directory behind: /tmp/ndh-leak-*"])
    finally:
        for path in leaked:
            shutil.rmtree(path, ignore_errors=True)


def test_a_run_that_cleans_up_passes(pytester):
    result = run_child(pytester, """
import shutil
from support import scratch_dir

def test_cleans_up():
    shutil.rmtree(scratch_dir("tidy"))
""")
    assert result.ret == 0
    assert "self-tests left" not in result.stdout.str()
