"""The named fields of wgsig/wire.py: they tile the datagrams the codec writes, and the CLFLG rule.

Pure tests: the server's hot path reads requests and records through these names only, so they
are checked here against the reference codec.
"""

from __future__ import annotations

from wgsig import wire, x1


def test_request_fields_tile_the_82_bytes_and_read_what_the_codec_wrote() -> None:
    fields = [wire.REQUEST_PEER_ID, wire.REQUEST_LABEL, wire.REQUEST_CLFLG, wire.REQUEST_GROUP, wire.REQUEST_TAG]
    assert [f.start for f in fields[1:]] == [f.stop for f in fields[:-1]]
    assert (fields[0].start, fields[-1].stop, wire.REQUEST_TAG.start) == (0, wire.REQUEST_SIZE, wire.REQUEST_SIGNED)
    peer, label = bytes(range(32)), bytes(range(100, 112))
    data = wire.encode_request(peer, label, 0x0203, 0xA1B2C3D4, bytes(32))
    assert (data[wire.REQUEST_PEER_ID], data[wire.REQUEST_LABEL]) == (peer, label)
    assert int.from_bytes(data[wire.REQUEST_GROUP], "big") == 0xA1B2C3D4
    assert (data[wire.CLFLG_HIGH], data[wire.CLFLG_LOW]) == (0x02, 0x03)
    assert data[wire.CLFLG_HIGH] & x1.XR_BYTE and not data[wire.CLFLG_HIGH] & x1.XA_BYTE
    assert wire.decode_request(data).tag == data[wire.REQUEST_TAG]


def test_record_fields_tile_the_50_bytes() -> None:
    record = wire.Record(bytes(range(32)), "192.0.2.7", 51820, bytes(range(64, 76)))
    data = wire.encode_record(record)
    assert len(data) == wire.RECORD_SIZE == wire.RECORD_LABEL.stop
    assert data[wire.RECORD_PEER_ID] == record.peer_id and data[wire.RECORD_LABEL] == record.label
    assert data[wire.RECORD_ENDPOINT] == wire.encode_endpoint(bytes([192, 0, 2, 7]), 51820)


def test_svext_field_of_a_response() -> None:
    datagram = wire.encode_response(bytes(wire.RECORDS_SIZE), 0, 9, bytes(32), svext=0x0105)
    assert int.from_bytes(datagram[wire.RESPONSE_SVEXT], "big") == 0x0105 == wire.decode_response(
        datagram, [bytes(32)]
    ).svext


def test_clflg_rule() -> None:
    """0 and 2 store endpoint and label, 1 only the label of a known peer, 3 nothing."""
    endpoint, label, nothing = wire.STORE_ENDPOINT, wire.STORE_LABEL, wire.STORE_NOTHING
    assert [wire.CLFLG_UPDATE[False][c] for c in range(4)] == [endpoint, nothing, endpoint, nothing]
    assert [wire.CLFLG_UPDATE[True][c] for c in range(4)] == [endpoint, label, endpoint, nothing]
    assert wire.CLFLG_BASE == 3 and x1.XA & wire.CLFLG_BASE == 0 and x1.XR & wire.CLFLG_BASE == 0
