"""The generation exporter's output file (modules/services/monitoring/generation-exporter.sh):
replaced atomically, never seen half-written, kept when a run fails; what it needs to run
(bash and coreutils only) and shellcheck's verdict. Set-up in generation_exporter_lib.py.
"""

from __future__ import annotations

import shutil
import subprocess
import threading

import pytest

from generation_exporter_lib import EXPORTER, OUTPUT_NAME, METRICS, store, host  # noqa: F401 (fixtures)


def test_fleet_exporter_replaces_the_file_atomically(host, store):
    one = store.system("one")
    host.deploy(one.toplevel)
    host.running(one.toplevel)
    target = host.output / OUTPUT_NAME
    host.metrics()
    first_inode = target.stat().st_ino
    host.metrics()
    assert target.stat().st_ino != first_inode, "the file must be renamed into place, not rewritten"
    assert target.stat().st_mode & 0o777 == 0o644, "node exporter reads it as another user"
    assert sorted(p.name for p in host.output.iterdir()) == [OUTPUT_NAME], "no temporary files left"


def test_fleet_exporter_readers_never_see_a_partial_file(host, store):
    one = store.system("one")
    host.deploy(one.toplevel)
    host.running(one.toplevel)
    target = host.output / OUTPUT_NAME
    host.metrics()
    stop = threading.Event()
    bad: list[str] = []

    def read_continuously():
        while not stop.is_set():
            content = target.read_text()
            if content.count("\n") != 3 * len(METRICS) or not content.endswith("\n"):
                bad.append(content)

    reader = threading.Thread(target=read_continuously)
    reader.start()
    try:
        for _ in range(15):
            assert host.export().returncode == 0
    finally:
        stop.set()
        reader.join()
    assert not bad, f"a reader saw an incomplete file: {bad[0]!r}"


def test_fleet_exporter_failure_leaves_the_previous_file(host, store):
    target = host.output / OUTPUT_NAME
    target.write_text("previous\n")
    result = host.export(NIXOS_GEN_NOW="not-a-number")
    assert result.returncode != 0
    assert "NIXOS_GEN_NOW" in result.stderr
    assert target.read_text() == "previous\n"
    assert sorted(p.name for p in host.output.iterdir()) == [OUTPUT_NAME]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"NIXOS_GEN_OUTPUT_DIR": ""}, "NIXOS_GEN_OUTPUT_DIR is not set"),
        ({"NIXOS_GEN_OUTPUT_DIR": "/nonexistent/textfile"}, "'/nonexistent/textfile' does not exist"),
    ],
)
def test_fleet_exporter_explains_a_missing_output_directory(host, overrides, message):
    result = host.export(**overrides)
    assert result.returncode != 0
    assert message in result.stderr


def test_fleet_exporter_uses_only_bash_and_coreutils(tmp_path, host, store):
    """Run with a PATH holding nothing but bash and coreutils programs, as on NixOS."""
    coreutils = [
        "readlink", "dirname", "tail", "tr", "mktemp", "chmod", "mv", "rm", "stat", "date", "uname",
    ]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ["bash", *coreutils]:
        (bin_dir / tool).symlink_to(shutil.which(tool))
    one = store.system("one")
    host.deploy(one.toplevel)
    host.running(one.toplevel)
    host.loader_conf("default nixos-generation-1.conf\n")
    host.entry("nixos-generation-1.conf", 1, one.toplevel)
    host.efi_variable("LoaderEntryDefault", "nixos-generation-1.conf")
    env = host.environment(PATH=str(bin_dir))
    env.pop("NIXOS_GEN_NOW")
    env.pop("NIXOS_GEN_HOST")
    result = subprocess.run([str(bin_dir / "bash"), str(EXPORTER)], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families((host.output / OUTPUT_NAME).read_text())}
    assert families["nixos_boot_generation"].samples[0].value == 1
    assert families["nixos_config_age_seconds"].samples[0].value >= 0


def test_fleet_exporter_passes_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not found on PATH (writeShellApplication runs it when Nix builds the exporter)")
    result = subprocess.run(["shellcheck", "-s", "bash", str(EXPORTER)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
