"""The TEST ONLY certificates of the twins' ACME stand-in (test/fleet/keys/twin-acme-test-*,
made by make-twin-acme-test-certs.sh; docs/twins.md, "Internet-facing parts"), checked with the
real openssl and a real TLS handshake on loopback: a wrong regeneration (another name, a key
that is not the certificate's, a CA that did not sign it, a short validity) fails here, where
otherwise only a booted twin's lego would notice."""
from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from support.tools import require

KEYS = Path(__file__).resolve().parents[2] / "test" / "fleet" / "keys"
CA = KEYS / "twin-acme-test-ca.pem"
CERT = KEYS / "twin-acme-test-server.pem"
KEY = KEYS / "twin-acme-test-server.key"
NAMES = ["acme.twins", "deployer"]
FIFTY_YEARS = 50 * 365 * 24 * 3600


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    require("openssl")
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)


def test_the_server_certificate_verifies_against_the_ca_for_the_stand_in_s_names():
    for name in NAMES:
        done = openssl("verify", "-x509_strict", "-purpose", "sslserver", "-verify_hostname", name,
                       "-CAfile", str(CA), str(CERT))
        assert done.returncode == 0 and done.stdout.strip() == f"{CERT}: OK", done.stdout + done.stderr
    # Any other name is refused (the certificate does not carry it; the CA's name constraints are
    # checked in the next test, from its extensions).
    other = openssl("verify", "-verify_hostname", "acme-v02.api.letsencrypt.org", "-CAfile", str(CA), str(CERT))
    assert other.returncode != 0


def test_the_certificates_name_exactly_the_stand_in_and_say_test_only():
    sans = openssl("x509", "-in", str(CERT), "-noout", "-ext", "subjectAltName")
    assert sans.returncode == 0, sans.stderr
    assert sans.stdout.split("\n", 1)[1].strip() == ", ".join(f"DNS:{n}" for n in NAMES)
    for path in (CA, CERT):
        names = openssl("x509", "-in", str(path), "-noout", "-subject", "-issuer").stdout.splitlines()
        assert len(names) == 2 and all("TEST ONLY" in line for line in names), names
    ca = openssl("x509", "-in", str(CA), "-noout", "-ext", "basicConstraints,nameConstraints").stdout
    assert "CA:TRUE" in ca and "DNS:acme.twins" in ca and "DNS:deployer" in ca, ca
    leaf = openssl("x509", "-in", str(CERT), "-noout", "-ext", "basicConstraints,extendedKeyUsage").stdout
    assert "CA:FALSE" in leaf and "TLS Web Server Authentication" in leaf, leaf


@pytest.mark.parametrize("path", [CA, CERT], ids=["ca", "server"])
def test_the_certificates_are_valid_now_and_for_decades(path):
    assert openssl("x509", "-in", str(path), "-noout", "-checkend", "0").returncode == 0
    assert openssl("x509", "-in", str(path), "-noout", "-checkend", str(FIFTY_YEARS)).returncode == 0


def test_the_key_is_the_server_certificate_s():
    from_key = openssl("pkey", "-in", str(KEY), "-pubout")
    from_cert = openssl("x509", "-in", str(CERT), "-noout", "-pubkey")
    assert from_key.returncode == 0 and from_cert.returncode == 0, from_key.stderr + from_cert.stderr
    assert from_key.stdout == from_cert.stdout


def test_a_client_trusting_only_the_ca_accepts_the_listener_as_acme_twins():
    """pebble's listener as lego meets it, on 127.0.0.1: a server with the committed certificate
    and key, a client that trusts only the test CA and checks the name."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(CERT, KEY)
    # With a cafile, the system's CAs are not loaded: the test CA is the only trust anchor.
    client_context = ssl.create_default_context(cafile=str(CA))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            connection, _ = listener.accept()
            with server_context.wrap_socket(connection, server_side=True) as tls:
                tls.sendall(b"ok")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with client_context.wrap_socket(raw, server_hostname="acme.twins") as tls:
                assert tls.recv(2) == b"ok"
                assert ("DNS", "acme.twins") in tls.getpeercert()["subjectAltName"]
        thread.join(timeout=10)
