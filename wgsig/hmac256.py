"""HMAC-SHA256 (RFC 2104) and SHA-256, without loading OpenSSL unless asked to.

``import hmac`` (or ``hashlib``) loads OpenSSL's libcrypto through ``_hashlib``: in the project's
VM about 40 ms of a 0.9 s wgsigc run that computes a handful of tags (issue 16). The interpreter
has its own SHA-256 built in (``_sha256``, built into Debian's python3): ``digest`` builds the
HMAC over it by hand, the inner and outer pads as RFC 2104 defines them, the same tags byte for
byte as ``hmac.digest(key, data, "sha256")`` (tests/test_hmac256.py, and every wire vector).

That SHA-256 is slower per byte than OpenSSL's (in the order of 1.7 against 2.1 µs for a
50-byte message, 6.5 against 2.4 µs for 500 bytes): wgsigd, which loads OpenSSL anyway for its
``Signer`` and tags every datagram it answers, calls ``prefer_openssl()`` at start (``wgsigd/cli.py``)
and the same functions then run on ``hmac.digest``. Callers look ``digest`` up on this module at
each call (``hmac256.digest(...)``), so the switch reaches them.

Pure: no IO; bytes in, bytes out.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: an idle wgsigc run loads no typing module (issue 16)

try:
    from _operator import _compare_digest as compare_digest  # what hmac.compare_digest is without OpenSSL
except ImportError:  # pragma: no cover - another interpreter
    from hmac import compare_digest

if TYPE_CHECKING:
    from collections.abc import Callable
    from hashlib import sha256  # the same interface; _sha256 has no stubs
else:
    try:
        from _sha256 import sha256  # built into CPython's binary on Debian: no shared library to load
    except ImportError:  # pragma: no cover - an interpreter built without it
        from hashlib import sha256

__all__ = ["compare_digest", "digest", "prefer_openssl", "sha256", "verify"]

BLOCK_SIZE = 64  # SHA-256's block size, the HMAC key's padded size
_INNER_PAD = bytes(x ^ 0x36 for x in range(256))
_OUTER_PAD = bytes(x ^ 0x5C for x in range(256))


def builtin_digest(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 of ``data`` under ``key`` over the interpreter's own SHA-256."""
    if len(key) > BLOCK_SIZE:
        key = sha256(key).digest()
    key = key.ljust(BLOCK_SIZE, b"\0")
    inner = sha256(key.translate(_INNER_PAD))
    inner.update(data)
    outer = sha256(key.translate(_OUTER_PAD))
    outer.update(inner.digest())
    return outer.digest()


digest: Callable[[bytes, bytes], bytes] = builtin_digest


def verify(key: bytes, data: bytes, tag: bytes) -> bool:
    """Constant-time check that ``tag`` is the HMAC-SHA256 of ``data`` under ``key``."""
    return compare_digest(digest(key, data), tag)


def prefer_openssl() -> None:
    """From now on ``digest`` is OpenSSL's (``hmac.digest``): for a process that loads OpenSSL
    anyway and tags many datagram-sized messages (wgsigd)."""
    global digest
    import functools
    import hmac

    digest = functools.partial(hmac.digest, digest="sha256")
