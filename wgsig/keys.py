"""WireGuard public keys: the one home of their size check and their text (44 characters of base64).

``PublicKey`` is the 32 bytes of a key, checked once when it is made, written as base64 by
``str()``.  It is a ``bytes`` subclass: it equals and hashes as its bytes, so a ``PublicKey``
finds the core's records, which are keyed by the raw peer IDs the codec decodes, and the
core's codecs take it wherever they take a peer ID.

Who uses it: the shells, where keys are parsed, compared and shown -- both config readers
(``[group] allowed_keys``, ``[[interface.NAME.peer]] public_key``), wgsigc's command line,
the interface state read over netlink and the writes to it, the decisions (``wgsigc/plan.py``),
the run record, status, the metrics file, the skeleton config and wgsigd's event log.

Who does not: the codecs (``wire.py``, ``x1.py``, ``client.py``) and the server's hot path
(``server.py``, ``table.py``, ``x1view.py``).  They slice peer IDs out of each datagram and
keep them in tables; a ``PublicKey`` per datagram would add a Python-level constructor call
(the size check, about 0.3 us, some 10 times a slice) to every request while buying nothing
there, as the wire layout already fixes the size.  Even a set of ``PublicKey`` is a little
slower to probe with raw bytes than a set of bytes (the comparison is no longer between two
exact ``bytes``), so wgsigd's config hands the server its ``allowed_keys`` as raw bytes.  Raw
peer IDs become a ``PublicKey`` only where a shell shows them (``PublicKey(event.peer_id)``)
or decides about them (``wgsigc/plan.py``).
"""

from __future__ import annotations

import binascii  # base64's own codec (base64.py also loads re: an idle wgsigc run does not)

from wgsig.wire import KEY_SIZE

TYPE_CHECKING = False  # not typing's: an idle wgsigc run loads no typing module (issue 16)
if TYPE_CHECKING:
    from typing import Any


class PublicKey(bytes):
    """A WireGuard public key: exactly 32 bytes; ``str()`` is its base64 text, as ``wg`` shows it."""

    __slots__ = ()

    def __new__(cls, raw: bytes) -> PublicKey:
        if not isinstance(raw, bytes):  # bytes(32) would be a key of zeros
            raise TypeError(f"a WireGuard public key is made from bytes, not {type(raw).__name__}")
        if len(raw) != KEY_SIZE:
            raise ValueError(f"a WireGuard public key is {KEY_SIZE} bytes, not {len(raw)}")
        return super().__new__(cls, raw)

    @classmethod
    def from_text(cls, text: str) -> PublicKey:
        """The key that ``text`` (base64, 44 characters; surrounding blanks ignored) writes;
        ValueError if it is not one."""
        key = cls.parse(text)
        if key is None:
            raise ValueError(f"{text!r} is not a base64 WireGuard public key (44 characters, 'wg pubkey')")
        return key

    @classmethod
    def parse(cls, text: Any) -> PublicKey | None:
        """Like ``from_text``, but None for anything that is not the text of a key (also non-strings:
        the value of a TOML or JSON field can be anything)."""
        if not isinstance(text, str):
            return None
        try:
            raw = binascii.a2b_base64(text.strip().encode("ascii"), strict_mode=True)  # b64decode(validate=True)
        except (binascii.Error, ValueError):  # ValueError: UnicodeEncodeError, not ASCII
            return None
        return cls(raw) if len(raw) == KEY_SIZE else None

    def __str__(self) -> str:
        return binascii.b2a_base64(self, newline=False).decode()

    def __repr__(self) -> str:
        return f"PublicKey.from_text({str(self)!r})"
