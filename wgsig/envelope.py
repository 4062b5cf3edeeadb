"""Encrypted payloads: ``SGROUP (4) || NONCE (12) || ChaCha20(P) || PAD``.

key = SHA-256(group secret), IETF ChaCha20 with initial block counter 1, and
SGROUP = GROUP XOR (NONCE bytes 8..11).  The nonce and pad come from the
caller, which owns the random source.

``Envelope`` keeps one key's cipher set up, for the server's per-datagram
path; ``seal`` and ``unseal`` are the one-off forms.  ``cryptography`` is
imported on first use: clients of unencrypted groups never pay for it.
"""

from __future__ import annotations

from wgsig.hmac256 import sha256

TYPE_CHECKING = False  # not typing's: an idle wgsigc run loads no typing module (issue 16)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    ChaCha20 = Callable[[bytes, bytes], bytes]  # (nonce, data) -> data XOR keystream

HEADER_SIZE = 16  # SGROUP + NONCE
NONCE_SIZE = 12
SGROUP = slice(0, 4)
NONCE = slice(4, HEADER_SIZE)
_NONCE_MASK = slice(8, 12)  # the nonce bytes SGROUP is XORed with, within the nonce...
_SGROUP_MASK = slice(12, HEADER_SIZE)  # ...and within the datagram
_COUNTER_1 = b"\x01\x00\x00\x00"
_TAG_SIZE = 16  # Poly1305



def envelope_key(secret: bytes) -> bytes:
    """The ChaCha20 key of a group: SHA-256 of its secret."""
    return sha256(secret).digest()


def scrambled_group(data: bytes) -> int:
    """The GROUP an encrypted datagram announces (SGROUP descrambled)."""
    return int.from_bytes(data[SGROUP], "big") ^ int.from_bytes(data[_SGROUP_MASK], "big")


class Envelope:
    """Seals and opens payloads under one group key."""

    __slots__ = ("_chacha20",)

    def __init__(self, key: bytes) -> None:
        self._chacha20 = _openssl_chacha20(key) or _aead_chacha20(key)

    def seal(self, payload: bytes, group: int, nonce: bytes, pad: bytes = b"") -> bytes:
        """Encrypt a cleartext payload for ``group``."""
        if len(nonce) != NONCE_SIZE:
            raise ValueError("nonce must be 12 bytes")
        sgroup = (group ^ int.from_bytes(nonce[_NONCE_MASK], "big")).to_bytes(4, "big")
        return sgroup + nonce + self._chacha20(nonce, payload) + pad

    def unseal(self, data: bytes, size: int) -> bytes:
        """Decrypt the first ``size`` payload bytes of an encrypted datagram.

        The caller checks ``len(data) >= HEADER_SIZE + size`` first; trailing
        pad is ignored.
        """
        return self._chacha20(data[NONCE], data[HEADER_SIZE : HEADER_SIZE + size])


def seal(payload: bytes, group: int, key: bytes, nonce: bytes, pad: bytes = b"") -> bytes:
    """Encrypt a cleartext payload for ``group``."""
    return Envelope(key).seal(payload, group, nonce, pad)


def unseal(data: bytes, key: bytes, size: int) -> bytes:
    """Decrypt the first ``size`` payload bytes of an encrypted datagram."""
    return Envelope(key).unseal(data, size)


# --- ChaCha20 with block counter 1 ------------------------------------------
# Two implementations of the same function, checked against each other in
# tests/test_core_properties.py.


def _aead_chacha20(key: bytes) -> ChaCha20:
    """Portable: RFC 8439 AEAD encryption is ChaCha20 from block counter 1
    followed by a Poly1305 tag; drop the tag.  XOR is its own inverse, so
    "encrypting" a ciphertext decrypts it."""
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    aead = ChaCha20Poly1305(key)

    def chacha20(nonce: bytes, data: bytes) -> bytes:
        sealed: bytes = aead.encrypt(nonce, data, None)
        return sealed[:-_TAG_SIZE]

    return chacha20


_MAX_DATA = 1280  # largest payload the fast path handles in its buffer (an X1 answer is at most 1,216 bytes)


def _openssl_chacha20(key: bytes) -> ChaCha20 | None:
    """Fast: one OpenSSL cipher context per key, only the IV reset per datagram.

    With cryptography 38 on OpenSSL 3, each new ``Cipher`` or AEAD call sets up
    a context and looks the algorithm up again: about 9-15 us per datagram,
    against under 1 us here.  Uses cryptography's OpenSSL bindings; returns
    None where they lack these functions (newer cryptography, whose AEAD path
    is fast anyway).  A context is not thread-safe: one Envelope per thread.
    """
    try:
        from cryptography.hazmat.bindings.openssl.binding import Binding

        binding: Any = Binding()  # type: ignore[no-untyped-call,unused-ignore]
        lib: Any = binding.lib
        ffi: Any = binding.ffi
        if not lib.Cryptography_HAS_300_EVP_CIPHER:
            return None
        init, update = lib.EVP_CipherInit_ex, lib.EVP_CipherUpdate
        cipher = lib.EVP_CIPHER_fetch(ffi.NULL, b"ChaCha20", ffi.NULL)
    except (ImportError, AttributeError):
        return None
    if cipher == ffi.NULL:
        return None
    cipher = ffi.gc(cipher, lib.EVP_CIPHER_free)
    context = ffi.gc(lib.EVP_CIPHER_CTX_new(), lib.EVP_CIPHER_CTX_free)
    if init(context, cipher, ffi.NULL, key, ffi.NULL, 1) != 1:
        return None
    out = ffi.new("unsigned char[]", _MAX_DATA)
    out_size = ffi.new("int *")
    out_bytes = ffi.buffer(out)
    null = ffi.NULL

    def chacha20(nonce: bytes, data: bytes) -> bytes:
        size = len(data)
        if size > _MAX_DATA or len(nonce) != NONCE_SIZE:
            raise ValueError("ChaCha20: payload too large or nonce not 12 bytes")
        # The 16-byte IV is the little-endian block counter, then the nonce.
        ok = init(context, null, null, null, _COUNTER_1 + nonce, 1) + update(context, out, out_size, data, size)
        if ok != 2:
            raise RuntimeError("OpenSSL ChaCha20 failed")
        result: bytes = out_bytes[:size]
        return result

    # Keep the cipher object alive as long as the context that uses it.
    chacha20.cipher = cipher  # type: ignore[attr-defined]
    return chacha20
