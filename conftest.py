"""Loads the harness's pytest plugin for in-repo runs where the package is not installed
(installed, it is loaded by its pytest11 entry point, and loading it twice would fail)."""
from importlib.metadata import entry_points

if not any(ep.name == "nixos_deploy_harness" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["harness.plugin"]

# pytester: the plugin's own tests run pytest on generated test files.
pytest_plugins = [*globals().get("pytest_plugins", []), "pytester"]
