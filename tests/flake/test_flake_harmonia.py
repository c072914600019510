"""The Harmonia cache module and the nix cache clients, evaluated with nixpkgs' lib through
tests/flake/module-eval.nix (helpers: flake_modules_lib.py); the Harmonia key script run for real."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from flake_modules_lib import HOMELAB, MODULE_EVAL, evaluate, inputs, nix_path


# --- Harmonia and the cache clients ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "select"),
    [
        ("cache", "config.services.harmonia.cache"),
        ("flat-list", "config.services.harmonia"),
    ],
)
def test_fleet_harmonia_uses_the_shape_nixpkgs_has(shape, select):
    facts = evaluate([HOMELAB, '{ homelab.services.harmonia.enable = true; }'],
                     f"{{ inherit (r) failedAssertions; h = {select}; ports = config.networking.firewall.allowedTCPPorts; }}",
                     shape=shape)
    assert facts["failedAssertions"] == []
    assert facts["h"]["enable"] is True
    assert facts["h"]["signKeyPaths"] == ["/var/lib/homelab-harmonia/signing-key.sec"]
    assert facts["h"]["settings"] == {"bind": "[::]:5000", "priority": 30}
    assert facts["ports"] == []


def test_fleet_harmonia_single_key_nixpkgs():
    facts = evaluate([HOMELAB, '{ homelab.services.harmonia.enable = true; }'],
                     "{ inherit (r) failedAssertions; h = config.services.harmonia; }", shape="flat-single")
    assert facts["failedAssertions"] == []
    assert facts["h"]["signKeyPath"] == "/var/lib/homelab-harmonia/signing-key.sec"
    two_keys = evaluate([HOMELAB, '{ homelab.services.harmonia = { enable = true; signKeyPaths = [ "/a" "/b" ]; }; }'],
                        "r.failedAssertions", shape="flat-single")
    assert len(two_keys) == 1 and "exactly one signing key" in two_keys[0]


def test_fleet_harmonia_generates_its_key_before_starting():
    unit = evaluate([HOMELAB, '{ homelab.services.harmonia.enable = true; }'],
                    "config.systemd.services.homelab-harmonia-keygen")
    assert unit["requiredBy"] == ["harmonia.service"] and unit["before"] == ["harmonia.service"]
    assert unit["serviceConfig"]["Type"] == "oneshot"


def _keygen_script(tmp: Path) -> str:
    """The key unit's script as the module writes it, for keys under `tmp`, with this host's
    nix-store in place of the package's."""
    module = (
        "{ homelab.services.harmonia = { enable = true; keyName = \"cache-test-1\"; "
        f"signKeyPaths = [ {json.dumps(str(tmp / 'var/lib/harmonia/signing-key.sec'))} ]; "
        f"publicKeyFile = {json.dumps(str(tmp / 'var/lib/harmonia/signing-key.pub'))}; }}; }}"
    )
    expr = (
        f"let {inputs()}"
        f"r = import {nix_path(MODULE_EVAL)} {{ inherit lib sopsNix; scriptsAsText = true; modules = [ {HOMELAB} {module} ]; }}; "
        "in r.config.systemd.services.homelab-harmonia-keygen.serviceConfig.ExecStart"
    )
    result = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    nix_store = shutil.which("nix-store")
    if nix_store is None:
        pytest.skip("nix-store not found on PATH: the key unit's script runs it")
    return json.loads(result.stdout).replace(
        "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nix-2.28/bin/nix-store", nix_store
    )


def _readable_by_nobody(path: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("reading as another user needs root and setpriv (util-linux)")
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat", str(path)],
                            capture_output=True, text=True, timeout=30)
    return result.returncode == 0


@pytest.mark.parametrize("umask", [0o077, 0o022], ids=["umask-077", "umask-022"])
def test_fleet_harmonia_public_key_is_readable_by_everyone(tmp_path, umask):
    tmp_path.chmod(0o755)
    script = _keygen_script(tmp_path)
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                            preexec_fn=lambda: os.umask(umask))
    assert result.returncode == 0, result.stderr
    public = tmp_path / "var/lib/harmonia/signing-key.pub"
    secret = tmp_path / "var/lib/harmonia/signing-key.sec"
    assert public.read_text().startswith("cache-test-1:")
    assert _readable_by_nobody(public), "the public key must be readable by others"
    assert not _readable_by_nobody(secret), "the secret key must not"
    assert secret.stat().st_mode & 0o077 == 0


def test_fleet_harmonia_repairs_a_public_key_inside_a_private_directory(tmp_path):
    """Keys an earlier version made: a 0700 directory (umask 077) holding both halves."""
    tmp_path.chmod(0o755)
    script = _keygen_script(tmp_path)
    keys = tmp_path / "var/lib/harmonia"
    keys.mkdir(parents=True)
    (tmp_path / "var").chmod(0o700)
    keys.chmod(0o700)
    (keys / "signing-key.sec").write_text("secret")
    (keys / "signing-key.sec").chmod(0o600)
    (keys / "signing-key.pub").write_text("cache-test-1:AAAA")
    (keys / "signing-key.pub").chmod(0o600)
    assert not _readable_by_nobody(keys / "signing-key.pub")
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (keys / "signing-key.sec").read_text() == "secret", "an existing key is kept"
    assert _readable_by_nobody(keys / "signing-key.pub")
    assert not _readable_by_nobody(keys / "signing-key.sec")


def test_fleet_harmonia_nginx_front_and_firewall():
    facts = evaluate([HOMELAB, """{ homelab.services.harmonia = { enable = true; openFirewall = true;
        nginx = { enable = true; serverName = "cache.example.lan"; }; }; }"""], """{
      inherit (r) failedAssertions;
      bind = config.services.harmonia.cache.settings.bind;
      ports = config.networking.firewall.allowedTCPPorts;
      location = config.services.nginx.virtualHosts."cache.example.lan".locations."/".proxyPass;
    }""")
    assert facts == {
        "failedAssertions": [],
        "bind": "127.0.0.1:5000",
        "ports": [80, 443],
        "location": "http://127.0.0.1:5000",
    }
    plain = evaluate([HOMELAB, "{ homelab.services.harmonia = { enable = true; openFirewall = true; port = 5001; }; }"],
                     "config.networking.firewall.allowedTCPPorts")
    assert plain == [5001]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ('signKeyPaths = [ "/nix/store/abc-key" ];', "outside /nix/store"),
        ("signKeyPaths = [ ];", "signKeyPaths is empty"),
        ('nginx = { enable = true; serverName = "c"; enableACME = false; };', "sslCertificate"),
    ],
)
def test_fleet_harmonia_rejects_unsafe_settings(setting, message):
    failed = evaluate([HOMELAB, f"{{ homelab.services.harmonia = {{ enable = true; {setting} }}; }}"], "r.failedAssertions")
    assert any(message in m for m in failed), failed


def test_fleet_nix_cache_client_settings():
    settings = evaluate([HOMELAB, """{ homelab.nixCache = { enable = true; url = "http://cache.lan:5000";
        publicKey = "cache.lan-1:AAAAbbbb+/=="; }; }"""],
        "{ inherit (r) failedAssertions; s = config.nix.settings; }")
    assert settings["failedAssertions"] == []
    # NixOS appends cache.nixos.org (module-eval.nix does as nix.nix does).
    assert settings["s"]["substituters"] == ["http://cache.lan:5000", "https://cache.nixos.org/"]
    assert settings["s"]["trusted-public-keys"] == ["cache.lan-1:AAAAbbbb+/=="]
    assert settings["s"]["require-sigs"] is True
    assert settings["s"]["narinfo-cache-negative-ttl"] == 60


def test_fleet_nix_cache_rejects_a_malformed_url_or_key():
    failed = evaluate([HOMELAB, '{ homelab.nixCache = { enable = true; url = "cache.lan"; publicKey = "AAAA"; }; }'],
                      "r.failedAssertions")
    assert len(failed) == 2
    assert any("not an http://" in m for m in failed) and any("not a nix public key" in m for m in failed)
