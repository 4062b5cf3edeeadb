"""WireGuard public keys as text: 44 characters of base64 for 32 bytes."""

from __future__ import annotations

import base64
import binascii

from wgsig.wire import KEY_SIZE


def parse_public_key(text: str) -> bytes | None:
    """The 32 bytes of a base64 public key, or None if it is not one."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return key if len(key) == KEY_SIZE else None


def key_text(key: bytes) -> str:
    return base64.b64encode(key).decode()
