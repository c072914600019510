# The harness as a Python package, built with nixpkgs' Python tooling: the `harness` modules, the
# `deploy-harness` command and the pytest plugin (entry point `nixos_deploy_harness`), with the
# dependencies of pyproject.toml. QEMU and VDE go on the command's PATH: it boots VMs.
{ lib
, python3Packages
, qemu
, vde2
}:

python3Packages.buildPythonPackage {
  pname = "nixos-deploy-harness";
  version = "0.1.0";
  pyproject = true;

  # Only what the package is made of: editing a scenario or a host does not rebuild it.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [ ../pyproject.toml ../README.md ../harness ];
  };

  build-system = [ python3Packages.setuptools ];

  dependencies = with python3Packages; [
    pytest
    pexpect
    pytest-xdist
    pytest-testinfra
    tenacity
    psutil
    prometheus-client
  ];

  makeWrapperArgs = [ "--prefix" "PATH" ":" (lib.makeBinPath [ qemu vde2 ]) ];

  # The self-tests boot VMs and run nix: they run from a checkout (`nix run .#scenarios`,
  # `pytest tests/`), not in the build sandbox.
  doCheck = false;
  pythonImportsCheck = [ "harness" "harness.plugin" "harness.cli" ];

  meta = {
    description = "pytest harness that proves a NixOS fleet's deploy-rs pipeline works, on real QEMU VMs";
    mainProgram = "deploy-harness";
  };
}
