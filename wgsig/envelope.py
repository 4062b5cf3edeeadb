"""Encrypted payloads: ``SGROUP (4) || NONCE (12) || ChaCha20(P) || PAD``.

key = SHA-256(group secret), IETF ChaCha20 with initial block counter 1, and
SGROUP = GROUP XOR (NONCE bytes 8..11).  The nonce and pad come from the
caller, which owns the random source.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

HEADER_SIZE = 16  # SGROUP + NONCE
NONCE_SIZE = 12
_COUNTER_1 = b"\x01\x00\x00\x00"


def envelope_key(secret: bytes) -> bytes:
    """The ChaCha20 key of a group: SHA-256 of its secret."""
    return hashlib.sha256(secret).digest()


def _chacha20(key: bytes, nonce: bytes, data: bytes) -> bytes:
    # cryptography's 16-byte nonce is the little-endian block counter, then
    # the 12-byte IETF nonce.
    cipher = Cipher(algorithms.ChaCha20(key, _COUNTER_1 + nonce), mode=None)
    return cipher.encryptor().update(data)


def scrambled_group(data: bytes) -> int:
    """The GROUP an encrypted datagram announces (SGROUP descrambled)."""
    return int.from_bytes(data[0:4], "big") ^ int.from_bytes(data[12:16], "big")


def seal(payload: bytes, group: int, key: bytes, nonce: bytes, pad: bytes = b"") -> bytes:
    """Encrypt a cleartext payload for ``group``."""
    if len(nonce) != NONCE_SIZE:
        raise ValueError("nonce must be 12 bytes")
    sgroup = (group ^ int.from_bytes(nonce[8:12], "big")).to_bytes(4, "big")
    return sgroup + nonce + _chacha20(key, nonce, payload) + pad


def unseal(data: bytes, key: bytes, size: int) -> bytes:
    """Decrypt the first ``size`` payload bytes of an encrypted datagram.

    The caller checks ``len(data) >= HEADER_SIZE + size`` first; trailing pad
    is ignored.
    """
    return _chacha20(key, data[4:16], data[HEADER_SIZE : HEADER_SIZE + size])
