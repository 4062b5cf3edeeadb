"""The wg(8) configuration skeleton the C client prints, byte for byte."""

from __future__ import annotations

from collections.abc import Iterable

from wgsig.keys import PublicKey
from wgsig.label import label_seconds
from wgsig.wire import Record


def format_skeleton(records: Iterable[Record], own_id: bytes, now: int, listen_port: int | None) -> str:
    """One ``[Peer]`` per record, our own record as a comment, then ``[Interface]``.

    ``listen_port`` is given when the request registered (even local port).
    """
    parts = []
    for record in records:
        if record.peer_id == own_id:
            parts.append(f"# Public endpoint = {record.endpoint}\n\n")
        else:
            parts.append(
                "[Peer]\n"
                f"# Seen {now - label_seconds(record.label)} s ago\n"
                f"PublicKey = {PublicKey(record.peer_id)}\n"
                f"Endpoint = {record.endpoint}\n\n"
            )
    if listen_port is not None:
        parts.append(f"[Interface]\nListenPort = {listen_port}\n")
    return "".join(parts)
