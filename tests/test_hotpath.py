"""The server's fast paths give exactly what the plain library calls give.

Pure tests: the prepared HMAC (Signer), both ChaCha20 implementations behind
Envelope against cryptography's public Cipher API, and the answer cache of a
group table (per secret, only changed datagrams re-encoded) against answers
encoded from scratch.
"""

from __future__ import annotations

import hmac
import os

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from hypothesis import given
from hypothesis import strategies as st

from wgsig import envelope
from wgsig.client import GroupCredentials, build_request
from wgsig.events import Change
from wgsig.label import encode_label
from wgsig.server import GroupConfig, Server
from wgsig.signer import Signer
from wgsig.table import GroupTable
from wgsig.wire import encode_endpoint, encode_slot_answer

SECRET = bytes(range(32))
OLD_SECRET = bytes(range(32, 64))
NOW = 1_700_000_000


@given(st.binary(max_size=200), st.binary(max_size=1000))
def test_signer_is_hmac_sha256(key: bytes, data: bytes) -> None:
    signer = Signer(key)
    tag = hmac.digest(key, data, "sha256")
    assert signer.digest(data) == tag
    assert signer.verify(data, tag)
    assert not signer.verify(data + b"x", tag)


def reference_chacha20(key: bytes, nonce: bytes, data: bytes) -> bytes:
    cipher = Cipher(algorithms.ChaCha20(key, b"\x01\x00\x00\x00" + nonce), mode=None)
    return cipher.encryptor().update(data)


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=12, max_size=12), st.binary(max_size=600))
def test_both_chacha20_implementations_match_the_cipher_api(key: bytes, nonce: bytes, data: bytes) -> None:
    expected = reference_chacha20(key, nonce, data)
    fast = envelope._openssl_chacha20(key)
    implementations = [envelope._aead_chacha20(key)] + ([fast] if fast is not None else [])
    for chacha20 in implementations:
        assert chacha20(nonce, data) == expected
        assert chacha20(nonce, data) == expected  # a reused context starts over for each nonce


def test_envelope_reuse_with_many_nonces() -> None:
    key = envelope.envelope_key(SECRET)
    sealer = envelope.Envelope(key)
    for _ in range(50):
        nonce, payload = os.urandom(12), os.urandom(540)
        sealed = sealer.seal(payload, 7, nonce)
        assert sealed[16:] == reference_chacha20(key, nonce, payload)
        assert envelope.scrambled_group(sealed) == 7
        assert sealer.unseal(sealed, 540) == payload


def fill(table: GroupTable, count: int, first: int = 1) -> None:
    for i in range(first, first + count):
        peer = i.to_bytes(4, "big") * 8
        table.upsert(peer, encode_endpoint(bytes([10, 0, i // 256 % 256, i % 256]), i % 65536), encode_label(NOW, i))


@given(st.lists(st.tuples(st.integers(1, 60), st.integers(0, 2)), max_size=80), st.integers(1, 45))
def test_cached_answer_equals_answer_from_scratch(steps: list[tuple[int, int]], max_records: int) -> None:
    """After any mix of upserts, refreshes and removals, the cache holds what encoding from scratch gives."""
    table = GroupTable(max_records)
    for n, (peer, action) in enumerate(steps):
        peer_id = peer.to_bytes(2, "big") * 16
        label = encode_label(NOW, n)
        if action == 0:
            table.upsert(peer_id, encode_endpoint(bytes([192, 0, 2, peer]), 1000 + n), label)
        elif action == 1:
            table.refresh(peer_id, label)
        elif table.label_of(peer_id) is not None:
            table.remove(peer_id)
        for secret in (SECRET, OLD_SECRET):
            assert table.answer(5, secret) == encode_slot_answer(table.slots, 5, secret)


def test_answers_under_two_secrets_do_not_mix() -> None:
    """During a rollover each request is answered under the secret it used."""
    server = Server([GroupConfig(3, (SECRET, OLD_SECRET), max_records=30)])
    for n, secret in enumerate([SECRET, OLD_SECRET, SECRET, OLD_SECRET, OLD_SECRET]):
        creds = GroupCredentials(3, secret)
        request = build_request(creds, bytes([n + 1]) * 32, encode_label(NOW, n), n % 2 * 3, os.urandom)
        answer, _ = server.receive_datagram(request, ("192.0.2.1", 1000 + n), float(NOW))
        assert answer == encode_slot_answer(server.groups[3].slots, 3, secret)


def test_large_group_reencodes_one_datagram_per_change() -> None:
    table = GroupTable(1000)
    fill(table, 1000)
    before = list(table.answer(1, SECRET))
    fill(table, 1, first=5000)  # evicts the oldest record, in slot 0
    after = table.answer(1, SECRET)
    assert len(after) == 100
    assert [i for i in range(100) if before[i] != after[i]] == [0]
    assert after == encode_slot_answer(table.slots, 1, SECRET)


def test_full_table_with_holes_puts_a_new_record_in_the_lowest_free_slot() -> None:
    """Loading into a smaller table leaves holes below its records: eviction must not fill the evicted slot."""
    def record(n: int) -> bytes:
        return bytes([n]) * 32 + encode_endpoint(bytes([10, 0, 0, n]), n) + encode_label(NOW, n)

    table = GroupTable(3)
    table.load([record(1), record(2), record(3), record(4), record(5)])  # keeps 3, 4, 5 in slots 2, 3, 4
    assert [s[0] for s in table.slots] == [0, 0, 3, 4, 5]
    change, evicted = table.upsert(bytes([9]) * 32, encode_endpoint(bytes([10, 0, 0, 9]), 9), encode_label(NOW, 9))
    assert change is Change.INSERTED and evicted == bytes([3]) * 32
    assert [s[0] for s in table.slots] == [9, 0, 0, 4, 5]
    assert table.answer(1, SECRET) == encode_slot_answer(table.slots, 1, SECRET)


@given(st.lists(st.tuples(st.integers(1, 40), st.booleans()), max_size=60), st.integers(1, 35))
def test_packed_slots_are_the_slots_end_to_end(steps: list[tuple[int, bool]], max_records: int) -> None:
    """What a snapshot saves is exactly the table's slots, holes included, across datagrams."""
    table = GroupTable(max_records)
    for n, (peer, remove) in enumerate(steps):
        peer_id = peer.to_bytes(2, "big") * 16
        if remove and table.label_of(peer_id) is not None:
            table.remove(peer_id)
        else:
            table.upsert(peer_id, encode_endpoint(bytes([192, 0, 2, peer]), n), encode_label(NOW, n))
    assert table.packed_slots() == b"".join(table.slots)
    assert all(len(slot) == 50 for slot in table.slots)
    reloaded = GroupTable(max_records)
    reloaded.load(table.slots)
    assert sorted(reloaded.records(), key=lambda r: r.peer_id) == sorted(table.records(), key=lambda r: r.peer_id)
