"""The flake's harness entry points (nix/package.nix, nix/micro-image.nix, nix/apps.nix), as far
as this machine allows: no nixpkgs, so each is evaluated against stand-ins for nixpkgs' builders
with nixpkgs' real `lib` (NIXPKGS_LIB); the micro image's build script is then run for real with
Debian's kernel, busybox and bash standing in for nixpkgs', and the image it makes boots."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from nixos_testlib import REPO
from support import require
from support.upstream import nixpkgs_lib

EVAL = Path(__file__).with_name("entry-points-eval.nix")


def evaluate(**args: str) -> dict:
    lib = nixpkgs_lib()
    argv = ["nix-instantiate", "--eval", "--strict", "--json", str(EVAL), "--arg", "nixpkgsLib", str(lib)]
    for name, value in args.items():
        argv += ["--argstr", name, value]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_package_has_exactly_pyproject_s_dependencies_and_its_entry_points():
    package = evaluate()["package"]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = sorted(re.split(r"[<>=!~ ]", dep, maxsplit=1)[0] for dep in project["dependencies"])
    assert sorted(package["dependencies"]) == wanted
    assert package["pyproject"] is True and package["pname"] == project["name"]
    assert package["mainProgram"] == "deploy-harness" == next(iter(project["scripts"]))
    assert "harness.plugin" in package["pythonImportsCheck"]


@pytest.mark.parametrize("name, program", [("scenarios", "ndh-scenarios"), ("deploy-harness", "deploy-harness"),
                                           ("rehearse", "ndh-rehearse")])
def test_each_app_is_a_valid_script_with_the_micro_image_and_the_checkout_as_defaults(name, program):
    app = evaluate()["apps"][name]
    assert app["name"] == program
    assert 'export NDH_MICRO_IMAGE="${NDH_MICRO_IMAGE:-/nix/store/ndh-micro-image}"' in app["text"]
    assert 'export NDH_FLAKE="${NDH_FLAKE:-$PWD}"' in app["text"]
    assert {"qemu", "vde2", "python-env"} <= set(app["inputs"])
    # writeShellApplication runs the text under bash with errexit/nounset/pipefail, after shellcheck.
    script = "#!/usr/bin/env bash\nset -o errexit -o nounset -o pipefail\n" + app["text"]
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    if shutil.which("shellcheck"):
        checked = subprocess.run(["shellcheck", "-"], input=script, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout


def test_the_rehearse_app_is_deploy_harness_rehearse_with_git():
    app = evaluate()["apps"]["rehearse"]
    assert app["text"].rstrip().endswith('exec /nix/store/python-nixos-deploy-harness/bin/deploy-harness rehearse "$@"')
    assert "git" in app["inputs"]


def test_the_scenarios_app_runs_pytest_on_scenarios_from_the_checkout(tmp_path):
    app = evaluate()["apps"]["scenarios"]
    # The NixOS tier is what the command is for: a run without it fails (scenarios/conftest.py).
    assert app["text"].rstrip().endswith('exec python -m pytest scenarios/ --require-nixos "$@"')
    assert '"--require-nixos"' in (REPO / "scenarios" / "conftest.py").read_text()
    done = subprocess.run(["bash", "-c", app["text"]], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 2
    assert "run it from the root of a nixos-deploy-harness checkout" in done.stderr


@pytest.fixture(scope="module")
def debian_inputs(tmp_path_factory):
    """Debian's cloud kernel laid out as nixpkgs' kernel output (bzImage, lib/modules/<v> with
    modules.dep), and static busybox and bash in bin/ directories."""
    require("modprobe", "depmod", "cpio", "mke2fs", "qemu-img", "xz")
    for path in ("/bin/busybox", "/bin/bash-static"):
        if not os.path.exists(path):
            pytest.skip(f"{path} is not installed here (Debian's busybox-static / bash-static)")
    from harness.images import debian, micro

    try:
        package = debian.resolve_dependency(micro.KERNEL_METAPACKAGE, "linux-image-")
        root = debian.download_and_unpack(package, tmp_path_factory.mktemp("deb"))
    except debian.DebianPackageError as exc:
        pytest.skip(f"no Debian kernel package to stand in for nixpkgs' kernel: {exc}")
    kernel = tmp_path_factory.mktemp("kernel")
    version = next((root / "lib" / "modules").iterdir()).name
    shutil.copy(next((root / "boot").glob("vmlinuz-*")), kernel / "bzImage")
    shutil.copytree(root / "lib", kernel / "lib", symlinks=True)
    subprocess.run(["depmod", "-b", str(kernel), version], check=True)
    tools = tmp_path_factory.mktemp("tools")
    for name, source in (("busybox", "/bin/busybox"), ("bash", "/bin/bash-static")):
        (tools / name / "bin").mkdir(parents=True)
        shutil.copy(source, tools / name / "bin" / name)
    return {"kernel": str(kernel), "kernelVersion": version,
            "busybox": str(tools / "busybox"), "bash": str(tools / "bash")}


@pytest.fixture(scope="module")
def nix_recipe_image(debian_inputs, tmp_path_factory):
    """The image the Nix recipe's own build script makes, run with bash as stdenv runs it."""
    recipe = evaluate(**debian_inputs)["microImage"]
    assert recipe["name"] == "ndh-micro-image"
    out = tmp_path_factory.mktemp("recipe") / "out"
    work = tmp_path_factory.mktemp("build")
    path = os.pathsep.join([os.environ["PATH"], "/usr/sbin", "/sbin"])
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", recipe["buildCommand"]],
                          env={"PATH": path, "out": str(out), "TMPDIR": str(work)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return out


def test_the_nix_recipe_makes_the_layout_the_engine_reads(nix_recipe_image):
    from harness.images import micro

    image = micro.load_prebuilt(nix_recipe_image)  # layout and guest scripts checked
    assert image.bios is None and image.inputs["recipe"] == "nix"
    listing = subprocess.run(["cpio", "-it", "--quiet"], stdin=open(image.initrd, "rb"),
                             capture_output=True, text=True, check=True).stdout.split()
    for expected in ("init", "bin/busybox", "bin/bash", "bin/sh", "etc/backdoor", "etc/modules.load"):
        assert expected in listing
    modules = [line for line in listing if line.startswith("lib/modules/")]
    assert {"lib/modules/virtio_net.ko", "lib/modules/virtio_blk.ko", "lib/modules/virtio_console.ko"} <= set(modules)


def test_a_fleet_boots_from_the_image_the_nix_recipe_made(nix_recipe_image, monkeypatch):
    from harness.fleet import Fleet, FleetSpec, NodeSpec
    from harness.images import micro

    monkeypatch.setenv(micro.PREBUILT_ENV, str(nix_recipe_image))
    fleet = Fleet(FleetSpec("nixrecipe", {"a": NodeSpec(vlans=(1,)), "b": NodeSpec(vlans=(1,))}), accel="tcg")
    try:
        fleet.boot()
        fleet["a"].succeed("ping -c 1 -W 5 b")
        assert "/persist" in fleet["b"].succeed("cat /proc/mounts")
    finally:
        fleet.close()


def test_the_flake_exposes_the_package_the_image_the_apps_and_the_dev_shell():
    flake = evaluate()["flake"]
    assert {"deploy-harness", "micro-image"} <= set(flake["packages"])
    assert flake["apps"] == {
        "scenarios": {"type": "app", "program": "/nix/store/ndh-scenarios/bin/ndh-scenarios"},
        "deploy-harness": {"type": "app", "program": "/nix/store/deploy-harness/bin/deploy-harness"},
        "rehearse": {"type": "app", "program": "/nix/store/ndh-rehearse/bin/ndh-rehearse"},
    }
    shell = flake["devShell"]
    # `deploy-harness` on PATH (the app's wrapper), and everything both test commands need.
    assert {"deploy-harness", "qemu", "vde2", "openssh", "shellcheck", "check-jsonschema", "sudo", "openssl"} <= set(shell["packages"])
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {re.split(r"[<>=!~ ]", dep, maxsplit=1)[0].lower()
              for dep in project["dependencies"] + project["optional-dependencies"]["test"]}
    wanted.discard("check-jsonschema")  # a command, on PATH in the shell
    assert wanted <= set(shell["python"]), wanted - set(shell["python"])
    assert 'export NDH_MICRO_IMAGE="${NDH_MICRO_IMAGE:-/nix/store/ndh-micro-image}"' in shell["shellHook"]
