"""The ci/ scripts are executable CLI tools with --help, stdlib only, sharing ci/cilib.py."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

CI_DIR = Path(__file__).resolve().parents[2] / "ci"

SCRIPTS = ["determine-hosts", "deploy-plan", "needs-reboot", "require-lock"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_is_executable_and_answers_help_through_its_shebang(script):
    path = CI_DIR / script
    assert os.access(path, os.X_OK), f"{path} is not executable"
    assert path.read_text().startswith("#!/usr/bin/env python3\n")
    proc = subprocess.run([str(path), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: {script}")
    assert "exit status" in proc.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_usage_errors_exit_2(script):
    proc = subprocess.run([sys.executable, str(CI_DIR / script), "--no-such-option"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "usage:" in proc.stderr


@pytest.mark.parametrize("source", SCRIPTS + ["cilib.py"])
def test_only_the_standard_library_is_imported(source):
    tree = ast.parse((CI_DIR / source).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    third_party = {name for name in imported - {"cilib"} if name not in sys.stdlib_module_names}
    assert not third_party, f"{source} imports non-stdlib modules: {third_party}"


def test_running_the_scripts_leaves_no_bytecode_in_ci(run_ci):
    run_ci("deploy-plan", "--branch", "feature", "--hosts-json", "[]")
    assert not (CI_DIR / "__pycache__").exists()
