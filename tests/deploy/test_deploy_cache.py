"""harness.cache against a real binary cache on the host.

A freshly built (input-addressed, so unsigned) store path is signed with a generated key,
copied to a `file://` cache, served over HTTP on 127.0.0.1 only, and pulled into separate
chroot stores: with the key trusted (accepted, the signature travels) and not (refused).
"""

from __future__ import annotations

import functools
import http.server
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import HostShell
from deploy_testlib import StorePaths, require_nix

from harness import cache, nix

TRIVIAL = """
{ tag }: derivation {
  name = "harness-cache-probe";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "echo ${tag} > $out" ];
}
"""


@pytest.fixture(autouse=True)
def _nix_present() -> None:
    require_nix()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass


@pytest.fixture
def serve_directory() -> Iterator[callable]:
    """Serve a directory over HTTP on 127.0.0.1 (port chosen by the kernel); stopped after."""
    servers: list[tuple[http.server.ThreadingHTTPServer, threading.Thread]] = []

    def start(directory: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def unsigned_path(scratch: Path, store_paths: StorePaths) -> str:
    expression = scratch / "probe.nix"
    expression.write_text(TRIVIAL)
    tag = {"tag": uuid.uuid4().hex}
    [out] = nix.build(file=str(expression), argstrs=tag, options={"substituters": ""})
    store_paths.add(nix.eval_json("drvPath", file=str(expression), argstrs=tag), out)
    return out


@pytest.fixture
def signing_key(host_shell: HostShell, scratch: Path) -> cache.SigningKey:
    return cache.generate_signing_key(
        host_shell, "harness-test-cache-1", str(scratch / "cache.sk"), str(scratch / "cache.pk")
    )


@pytest.fixture
def served_cache(
    host_shell: HostShell,
    scratch: Path,
    signing_key: cache.SigningKey,
    unsigned_path: str,
    serve_directory,
) -> str:
    cache.sign_paths(host_shell, signing_key, [unsigned_path])
    cache_dir = scratch / "binary-cache"
    cache.copy_to_cache(host_shell, f"file://{cache_dir}", [unsigned_path])
    assert (cache_dir / "nix-cache-info").is_file()
    return serve_directory(cache_dir)


def test_generated_key_has_the_name_and_a_public_half(signing_key: cache.SigningKey) -> None:
    assert signing_key.public_key.startswith("harness-test-cache-1:")
    assert len(signing_key.public_key.split(":", 1)[1]) == 44  # base64 of an ed25519 key
    assert Path(signing_key.secret_key_file).read_text().startswith("harness-test-cache-1:")


def test_signing_adds_the_keys_signature(
    host_shell: HostShell, signing_key: cache.SigningKey, unsigned_path: str
) -> None:
    before = cache.path_signatures(host_shell, [unsigned_path])
    assert not cache.signed_by(before[unsigned_path], signing_key)
    assert cache.unsigned_paths(before, signing_key) == [unsigned_path]
    cache.sign_paths(host_shell, signing_key, [unsigned_path])
    after = cache.path_signatures(host_shell, [unsigned_path])
    assert cache.signed_by(after[unsigned_path], signing_key)
    assert cache.signed_by(after[unsigned_path], signing_key.public_key)
    assert not cache.signed_by(after[unsigned_path], "some-other-key-1")
    assert cache.unsigned_paths(after, signing_key) == []


def test_trusted_key_pull_is_accepted_and_keeps_the_signature(
    host_shell: HostShell,
    scratch: Path,
    signing_key: cache.SigningKey,
    unsigned_path: str,
    served_cache: str,
) -> None:
    store = str(scratch / "client-store")
    result = cache.realise_from_substituter(
        host_shell, [unsigned_path], served_cache, [signing_key.public_key], store=store
    )
    assert result.ok, result.output
    assert cache.CopiedPath(unsigned_path, served_cache) in result.copied
    assert cache.parse_copied_paths(result.output, source_prefix="http://127.0.0.1:")
    assert result.refused_unsigned == ()
    pulled = cache.path_signatures(host_shell, [unsigned_path], store=store)
    assert cache.signed_by(pulled[unsigned_path], signing_key)
    assert (scratch / "client-store" / unsigned_path.lstrip("/")).read_text() == Path(
        unsigned_path
    ).read_text()


def test_untrusted_key_pull_is_refused(
    host_shell: HostShell,
    scratch: Path,
    unsigned_path: str,
    served_cache: str,
) -> None:
    other = cache.generate_signing_key(
        host_shell, "harness-other-key-1", str(scratch / "other.sk"), str(scratch / "other.pk")
    )
    store = str(scratch / "untrusting-store")
    result = cache.realise_from_substituter(
        host_shell, [unsigned_path], served_cache, [other.public_key], store=store
    )
    assert not result.ok
    assert result.copied == ()
    assert result.refused_unsigned == (cache.CopiedPath(unsigned_path, served_cache),)
    # Nix 2.8's exact wording (newer Nix: "ignoring substitute for ..., as it's not signed ...").
    assert (
        f"the substitute for '{unsigned_path}' from '{served_cache}' is not signed by any of "
        "the keys in 'trusted-public-keys'" in result.output
    )
    assert not (scratch / "untrusting-store" / unsigned_path.lstrip("/")).exists()


def test_newer_nix_refusal_wording_is_parsed() -> None:
    output = (
        "warning: ignoring substitute for '/nix/store/abc-x' from 'http://cache:5000', as it's "
        "not signed by any of the keys in 'trusted-public-keys'\n"
    )
    assert cache.parse_unsigned_refusals(output) == [
        cache.CopiedPath("/nix/store/abc-x", "http://cache:5000")
    ]


def test_copied_paths_filter_by_source() -> None:
    output = (
        "copying path '/nix/store/aaa-x' from 'http://cache:5000'...\n"
        "copying path '/nix/store/bbb-y' from 'https://cache.nixos.org'...\n"
    )
    assert cache.parse_copied_paths(output, source_prefix="http://cache:5000") == [
        cache.CopiedPath("/nix/store/aaa-x", "http://cache:5000")
    ]


def test_path_info_json_of_newer_nix_is_understood() -> None:
    newer = '{"/nix/store/aaa-x": {"signatures": ["k-1:abc"]}, "bbb-y": null}'
    assert cache.parse_path_info_signatures(newer) == {
        "/nix/store/aaa-x": ("k-1:abc",),
        "/nix/store/bbb-y": (),
    }


def test_failed_command_names_the_node(host_shell: HostShell, scratch: Path) -> None:
    with pytest.raises(
        cache.CacheError, match=r"copying 1 path\(s\) to .* failed on host"
    ) as caught:
        cache.copy_to_cache(
            host_shell,
            f"file://{scratch}/c",
            ["/nix/store/00000000000000000000000000000000-absent"],
            options={"substituters": ""},  # no retries against unreachable cache.nixos.org
        )
    # nix's own message is carried along
    assert "is required, but there is no substituter that can build it" in str(caught.value)
