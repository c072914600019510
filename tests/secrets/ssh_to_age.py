"""What ssh-to-age computes, for the tests: an SSH ed25519 key as an age X25519 key.

sops-nix derives each host's age identity from its SSH host key this way at activation
(sops.age.sshKeyPaths), and operators derive the matching recipient for .sops.yaml with
`ssh-to-age < ssh_host_ed25519_key.pub`. Neither Debian nor PyPI ships ssh-to-age, so the tests
carry the conversion (the standard ed25519 -> X25519 birational map; the private scalar is the
first half of SHA-512 of the seed) and check it against the real `age` tools: the recipient of
the derived identity (`age-keygen -y`) must be the recipient derived from the public key.
"""
from __future__ import annotations

import base64
import hashlib
import struct

P = 2**255 - 19
D = (-121665 * pow(121666, -1, P)) % P
BECH32_ALPHABET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


class KeyError_(ValueError):
    """A key that is not an unencrypted ed25519 SSH key."""


def _bech32_polymod(values: list[int]) -> int:
    generator = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            checksum ^= generator[i] if (top >> i) & 1 else 0
    return checksum


def _to_5bit(data: bytes) -> list[int]:
    accumulator, bits, out = 0, 0, []
    for byte in data:
        accumulator = (accumulator << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            out.append((accumulator >> bits) & 31)
    if bits:
        out.append((accumulator << (5 - bits)) & 31)
    return out


def bech32_encode(hrp: str, data: bytes) -> str:
    """BIP-173 bech32 (what age uses), without BIP-173's 90-character limit."""
    hrp = hrp.lower()
    values = _to_5bit(data)
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    polymod = _bech32_polymod(expanded + values + [0] * 6) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(BECH32_ALPHABET[v] for v in values + checksum)


def _read_string(blob: bytes, offset: int) -> tuple[bytes, int]:
    if offset + 4 > len(blob):
        raise KeyError_("truncated SSH key blob")
    (length,) = struct.unpack(">I", blob[offset:offset + 4])
    end = offset + 4 + length
    if end > len(blob):
        raise KeyError_("truncated SSH key blob")
    return blob[offset + 4:end], end


def _edwards_to_montgomery(public: bytes) -> bytes:
    if len(public) != 32:
        raise KeyError_(f"an ed25519 public key has 32 bytes, not {len(public)}")
    y = int.from_bytes(public, "little") & ((1 << 255) - 1)
    if y >= P:
        raise KeyError_("ed25519 public key: y is not reduced")
    # The point must be on the curve: x^2 = (y^2 - 1) / (d y^2 + 1) has a root.
    x2 = (y * y - 1) * pow(D * y * y + 1, -1, P) % P
    if x2 and pow(x2, (P - 1) // 2, P) != 1:
        raise KeyError_("ed25519 public key is not a point on the curve")
    if y == 1:
        raise KeyError_("ed25519 public key is the identity point")
    u = (1 + y) * pow(1 - y, -1, P) % P
    return u.to_bytes(32, "little")


def public_key_to_age(line: str) -> str:
    """`ssh-ed25519 AAAA... comment` -> `age1...` (ssh-to-age < key.pub)."""
    fields = line.split()
    if len(fields) < 2 or fields[0] != "ssh-ed25519":
        raise KeyError_(f"not an ssh-ed25519 public key: {line[:40]!r}")
    blob = base64.b64decode(fields[1])
    key_type, offset = _read_string(blob, 0)
    public, _ = _read_string(blob, offset)
    if key_type != b"ssh-ed25519":
        raise KeyError_(f"key blob says {key_type!r}, not ssh-ed25519")
    return bech32_encode("age", _edwards_to_montgomery(public))


def private_key_to_age(pem: str) -> str:
    """An unencrypted OpenSSH ed25519 private key -> `AGE-SECRET-KEY-1...`
    (ssh-to-age -private-key)."""
    lines = [line.strip() for line in pem.strip().splitlines()]
    if not lines or lines[0] != "-----BEGIN OPENSSH PRIVATE KEY-----":
        raise KeyError_("not an OpenSSH private key")
    blob = base64.b64decode("".join(lines[1:-1]))
    magic = b"openssh-key-v1\0"
    if not blob.startswith(magic):
        raise KeyError_("not an openssh-key-v1 private key")
    offset = len(magic)
    cipher, offset = _read_string(blob, offset)
    _kdf, offset = _read_string(blob, offset)
    _kdf_options, offset = _read_string(blob, offset)
    if cipher != b"none":
        raise KeyError_("the private key is encrypted with a passphrase")
    (count,) = struct.unpack(">I", blob[offset:offset + 4])
    offset += 4
    for _ in range(count):
        _public_blob, offset = _read_string(blob, offset)
    private, _ = _read_string(blob, offset)
    check1, check2 = struct.unpack(">II", private[:8])
    if check1 != check2:
        raise KeyError_("corrupt private key (check integers differ)")
    key_type, inner = _read_string(private, 8)
    if key_type != b"ssh-ed25519":
        raise KeyError_(f"private key is {key_type!r}, not ssh-ed25519")
    _public, inner = _read_string(private, inner)
    secret, _ = _read_string(private, inner)
    scalar = hashlib.sha512(secret[:32]).digest()[:32]
    return bech32_encode("age-secret-key-", scalar).upper()
