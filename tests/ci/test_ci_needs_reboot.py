"""ci/needs-reboot on toplevel-like directories built in a temp dir (and over a recorded ssh)."""

import os
import textwrap

import pytest

LINKS = ("kernel", "initrd", "kernel-modules")
# The toplevel builder is the host's /bin/sh (no nixpkgs here): the sandbox must be
# off (root may set that); no substituter is reachable, so do not ask one.
NIX_CONFIG = "sandbox = false\nsubstituters =\n"


@pytest.fixture
def store(tmp_path):
    """Fake store objects: a kernel image, an initrd and a module tree per version."""
    root = tmp_path / "store"

    def obj(kind, version):
        path = root / f"{kind}-{version}"
        if kind == "modules":
            (path / "lib" / "modules").mkdir(parents=True, exist_ok=True)
        else:
            path.mkdir(parents=True, exist_ok=True)
            (path / "image").write_text(f"{kind} {version}\n")
            path = path / "image"
        return path

    return obj


@pytest.fixture
def toplevel(tmp_path, store):
    """Build a toplevel-like directory: kernel, initrd, kernel-modules symlinks."""

    def make(name, kernel="1", initrd="1", modules="1", omit=()):
        directory = tmp_path / name
        directory.mkdir()
        targets = {"kernel": store("kernel", kernel), "initrd": store("initrd", initrd),
                   "kernel-modules": store("modules", modules)}
        for link, target in targets.items():
            if link not in omit:
                os.symlink(target, directory / link)
        (directory / "activate").write_text("#!/bin/sh\n")
        return directory

    return make


def needs_reboot(run_ci, booted, new, *extra):
    return run_ci("needs-reboot", "--booted", booted, "--new", new, *extra)


def test_same_kernel_initrd_and_modules_need_no_reboot(run_ci, toplevel):
    proc = needs_reboot(run_ci, toplevel("booted"), toplevel("new"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "false\n"
    assert "unchanged" in proc.stderr


@pytest.mark.parametrize("changed", ["kernel", "initrd", "modules"])
def test_a_changed_kernel_initrd_or_module_tree_needs_a_reboot(run_ci, toplevel, changed):
    new = toplevel("new", **{changed: "2"})
    proc = needs_reboot(run_ci, toplevel("booted"), new)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "true\n"
    link = "kernel-modules" if changed == "modules" else changed
    assert f"{link} changed:" in proc.stderr
    assert proc.stderr.count(" changed:") == 1


def test_activatable_wrapper_is_resolved_to_the_same_kernel(run_ci, tmp_path, toplevel):
    # deploy-rs deploys a buildEnv whose links point at the toplevel's links: one
    # more level of indirection that must not look like a kernel change.
    real = toplevel("toplevel")
    wrapper = tmp_path / "activatable"
    wrapper.mkdir()
    for link in LINKS:
        os.symlink(real / link, wrapper / link)
    proc = needs_reboot(run_ci, wrapper, toplevel("new"))
    assert proc.stdout == "false\n", proc.stderr


def test_booted_path_may_itself_be_a_symlink_like_run_booted_system(run_ci, tmp_path, toplevel):
    link = tmp_path / "booted-system"
    os.symlink(toplevel("booted"), link)
    proc = needs_reboot(run_ci, link, toplevel("new", kernel="2"))
    assert proc.stdout == "true\n", proc.stderr


@pytest.mark.parametrize("missing", LINKS)
def test_missing_link_on_the_running_side_means_reboot_with_a_warning(run_ci, toplevel, missing):
    proc = needs_reboot(run_ci, toplevel("booted", omit=(missing,)), toplevel("new"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "true\n"
    assert f"warning: local: the running system has no {missing} link" in proc.stderr


def test_dangling_link_on_the_running_side_counts_as_missing(run_ci, tmp_path, toplevel):
    booted = toplevel("booted", omit=("initrd",))
    os.symlink(tmp_path / "gone", booted / "initrd")
    proc = needs_reboot(run_ci, booted, toplevel("new"))
    assert proc.stdout == "true\n"
    assert "no initrd link" in proc.stderr


@pytest.mark.parametrize("missing", LINKS)
def test_missing_link_on_the_new_side_is_an_error(run_ci, toplevel, missing):
    proc = needs_reboot(run_ci, toplevel("booted"), toplevel("new", omit=(missing,)))
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert f"has no {missing} link: not a bootable NixOS toplevel" in proc.stderr


def test_missing_new_directory_is_an_error(run_ci, tmp_path, toplevel):
    proc = needs_reboot(run_ci, toplevel("booted"), tmp_path / "result")
    assert proc.returncode == 1
    assert "does not exist or is not a directory; build it first" in proc.stderr


def test_missing_booted_directory_is_an_error(run_ci, tmp_path, toplevel):
    proc = needs_reboot(run_ci, tmp_path / "no-booted-system", toplevel("new"))
    assert proc.returncode == 1
    assert "run this on a NixOS host or use --ssh" in proc.stderr


def test_default_running_side_is_run_booted_system(run_ci, toplevel):
    proc = run_ci("needs-reboot", "--new", toplevel("new"))
    if os.path.isdir("/run/booted-system"):
        pytest.skip("this machine is a NixOS host: /run/booted-system exists, the error path cannot be shown")
    assert proc.returncode == 1
    assert "/run/booted-system does not exist" in proc.stderr


def test_github_output(run_ci, tmp_path, toplevel):
    out = tmp_path / "github-output"
    proc = run_ci("needs-reboot", "--booted", toplevel("booted"), "--new", toplevel("new", initrd="2"),
                  "--github-output", "needs-reboot", env={"GITHUB_OUTPUT": str(out)})
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == "needs-reboot=true\n"


# --- the running side read over ssh -------------------------------------------------
# The transport is a recording stand-in for ssh: it logs its arguments and runs the
# remote command with sh in a per-destination directory (no network is allowed here).
# The remote command itself (readlink -e ...) is the real one.

FAKE_SSH = """\
printf '%s\\n' "$*" >> "$FAKE_SSH_LOG"
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do shift; done
shift
dest="$1"; shift
if [ -n "$FAKE_SSH_REFUSE" ]; then
  echo "ssh: connect to host ${dest#*@} port 22: Connection refused" >&2
  exit 255
fi
cd "$FAKE_SSH_ROOT/$dest" || exit 255
exec sh -c "$1"
"""


@pytest.fixture
def fake_ssh(tmp_path, fake_bin):
    fake_bin("ssh", FAKE_SSH)
    root = tmp_path / "remote"
    root.mkdir()
    log = tmp_path / "ssh.log"
    env = {"PATH": fake_bin.env_path, "FAKE_SSH_ROOT": str(root), "FAKE_SSH_LOG": str(log)}

    def host(destination, booted_dir):
        (root / destination).mkdir(parents=True)
        os.symlink(booted_dir, root / destination / "booted-system")

    host.env = env
    host.log = log
    return host


def test_over_ssh_same_and_changed(run_ci, fake_ssh, toplevel):
    fake_ssh("deploy@niko.test", toplevel("booted"))
    common = ["--ssh", "deploy@niko.test", "--booted-path", "booted-system", "--ssh-opt=-p", "--ssh-opt=2222"]
    same = run_ci("needs-reboot", *common, "--new", toplevel("same"), env=fake_ssh.env)
    assert same.returncode == 0, same.stderr
    assert same.stdout == "false\n"
    changed = run_ci("needs-reboot", *common, "--new", toplevel("changed", modules="2"), env=fake_ssh.env)
    assert changed.stdout == "true\n"
    assert "deploy@niko.test: kernel-modules changed" in changed.stderr
    call = fake_ssh.log.read_text().splitlines()[0]
    assert "-o BatchMode=yes" in call and "-p 2222 -- deploy@niko.test" in call


def test_over_ssh_missing_link_means_reboot(run_ci, fake_ssh, toplevel):
    fake_ssh("deploy@niko.test", toplevel("booted", omit=("kernel",)))
    proc = run_ci("needs-reboot", "--ssh", "deploy@niko.test", "--booted-path", "booted-system",
                  "--new", toplevel("new"), env=fake_ssh.env)
    assert proc.stdout == "true\n", proc.stderr
    assert "no kernel link" in proc.stderr


def test_over_ssh_missing_booted_directory_is_an_error(run_ci, fake_ssh, tmp_path, toplevel):
    fake_ssh("deploy@niko.test", tmp_path / "nothing-here")
    proc = run_ci("needs-reboot", "--ssh", "deploy@niko.test", "--booted-path", "booted-system",
                  "--new", toplevel("new"), env=fake_ssh.env)
    assert proc.returncode == 1
    assert "no such directory: booted-system" in proc.stderr


def test_unreachable_host_is_an_error_naming_ssh(run_ci, fake_ssh, toplevel):
    env = {**fake_ssh.env, "FAKE_SSH_REFUSE": "1"}
    proc = run_ci("needs-reboot", "--ssh", "deploy@niko.test", "--new", toplevel("new"), env=env)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "could not read /run/booted-system over ssh (deploy@niko.test), exit status 255" in proc.stderr
    assert "Connection refused" in proc.stderr


# --- fleet mode: real nix builds each toplevel from a flake, booted side over ssh -----

def fleet_toplevel_flake(directory, store, kernels):
    """A no-input flake whose toplevels are tiny real derivations with the three links."""
    configs = []
    for host, kernel in kernels.items():
        links = {"kernel": store("kernel", kernel), "initrd": store("initrd", "1"),
                 "kernel-modules": store("modules", "1")}
        script = "/bin/mkdir $out; " + " ".join(f"/bin/ln -s {target} $out/{link};"
                                                   for link, target in links.items())
        configs.append(
            f'{host}.config.system.build.toplevel = derivation {{ name = "nixos-system-{host}"; '
            f'system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "{script}" ]; }};'
        )
    nodes = " ".join(
        f'{host} = {{ hostname = "{host.lower()}.test"; sshUser = "deploy"; sshOpts = [ "-p" "2222" ]; }};'
        for host in kernels
    )
    directory.mkdir()
    (directory / "flake.nix").write_text(textwrap.dedent(f"""\
        {{
          outputs = {{ self }}: {{
            nixosConfigurations = {{ {' '.join(configs)} }};
            deploy.nodes = {{ {nodes} }};
          }};
        }}
        """))
    return directory


def test_fleet_mode_builds_each_toplevel_and_reads_each_booted_system(
        run_ci, real_nix, fake_ssh, tmp_path, store, toplevel):
    flake = fleet_toplevel_flake(tmp_path / "fleet", store, {"Ingress": "1", "Niko": "2"})
    fake_ssh("deploy@ingress.test", toplevel("ingress-booted", kernel="1"))
    fake_ssh("deploy@niko.test", toplevel("niko-booted", kernel="1"))
    env = {**fake_ssh.env, "NIX_CONFIG": NIX_CONFIG}
    proc = run_ci("needs-reboot", "--fleet", flake, "--booted-path", "booted-system", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "true\n"
    assert "Ingress: kernel, initrd and kernel-modules unchanged" in proc.stderr
    assert "Niko: kernel changed:" in proc.stderr
    calls = fake_ssh.log.read_text().splitlines()
    assert [c.split(" -- ")[1].split()[0] for c in calls] == ["deploy@ingress.test", "deploy@niko.test"]
    assert all("-p 2222 --" in c for c in calls)


def test_fleet_mode_no_change_anywhere(run_ci, real_nix, fake_ssh, tmp_path, store, toplevel):
    flake = fleet_toplevel_flake(tmp_path / "fleet", store, {"Niko": "1"})
    fake_ssh("deploy@niko.test", toplevel("niko-booted"))
    env = {**fake_ssh.env, "NIX_CONFIG": NIX_CONFIG}
    proc = run_ci("needs-reboot", "--fleet", flake, "--booted-path", "booted-system", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "false\n"


def test_fleet_mode_with_nix_failing(run_ci, real_nix, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "flake.nix").write_text("{ outputs = { self }: { deploy = throw \"no fleet here\"; }; }\n")
    proc = run_ci("needs-reboot", "--fleet", broken)
    assert proc.returncode == 1
    assert "no fleet here" in proc.stderr


def test_new_is_required_without_fleet(run_ci, toplevel):
    proc = run_ci("needs-reboot", "--booted", toplevel("booted"))
    assert proc.returncode == 2
    assert "--new DIR is required" in proc.stderr
