"""Endpoint text (wgsig/endpoint.py): the format logs, run records, status and plans share.

Pure tests of pure functions.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wgsig.endpoint import check_port, endpoint_text, parse_endpoint, parse_port, split_host_port, unmapped


def test_ipv4_and_ipv6_text() -> None:
    assert endpoint_text(("192.0.2.1", 51820)) == "192.0.2.1:51820"
    assert endpoint_text(("2001:db8::1", 51820)) == "[2001:db8::1]:51820"
    assert endpoint_text(("::", 1223)) == "[::]:1223"
    assert endpoint_text(None) is None


def test_the_dual_stack_prefix_is_stripped_from_ipv4_only() -> None:
    assert unmapped("::ffff:192.0.2.7") == "192.0.2.7"
    assert unmapped("192.0.2.7") == "192.0.2.7"
    assert unmapped("2001:db8::ffff:1") == "2001:db8::ffff:1"
    assert endpoint_text((unmapped("::ffff:192.0.2.7"), 9)) == "192.0.2.7:9"


@given(st.ip_addresses().map(str), st.integers(0, 65535))
def test_parse_reads_what_text_writes(host: str, port: int) -> None:
    assert parse_endpoint(endpoint_text((host, port))) == (host, port)


def test_parse_refuses_what_is_not_an_endpoint() -> None:
    for text in (None, 7, "", "192.0.2.1", "192.0.2.1:65536", "192.0.2.1:x", "host:1", "[2001:db8::1:1", "2001:db8::1"):
        assert parse_endpoint(text) is None, text


def test_split_host_port() -> None:
    assert split_host_port("192.0.2.1:7", None) == ("192.0.2.1", "7")
    assert split_host_port("example.org", 1223) == ("example.org", "1223")
    assert split_host_port("[2001:db8::1]:7", None) == ("2001:db8::1", "7")
    assert split_host_port("[2001:db8::1]", 1223) == ("2001:db8::1", "1223")
    assert split_host_port("2001:db8::1", 1223) == ("2001:db8::1", "1223")
    assert split_host_port("[2001:db8::1", 1223) == ("", "")
    assert split_host_port("[2001:db8::1]x", 1223) == ("", "")
    assert split_host_port("192.0.2.1", None) == ("192.0.2.1", "")


def test_ports_are_1_to_65535_and_errors_name_the_port() -> None:
    assert parse_port("1223") == 1223 and check_port(65535) == 65535
    with pytest.raises(ValueError, match=r"^LOCAL_PORT 'x' is not a number$"):
        parse_port("x", "LOCAL_PORT")
    with pytest.raises(ValueError, match=r"^port 0 is out of range 1-65535$"):
        parse_port("0")
    with pytest.raises(ValueError, match=r"^port 65536 is out of range 1-65535$"):
        check_port(65536)
