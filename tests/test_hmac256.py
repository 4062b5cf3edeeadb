"""wgsig.hmac256: HMAC-SHA256 over the interpreter's built-in SHA-256 gives hmac.digest's tags,
byte for byte, and every recorded vector (the C programs' and X1's) under either implementation.

Pure code, no fakes. In this test process another test may already have switched the module to
OpenSSL (``prefer_openssl``, which wgsigd's start-up calls): each vector test below sets the
implementation it checks.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests import test_client_vectors, test_x1_codec, vectors
from tests.test_client_vectors import SCENARIOS
from wgsig import hmac256

IMPLEMENTATIONS: dict[str, Callable[[bytes, bytes], bytes]] = {
    "builtin": hmac256.builtin_digest,
    "openssl": lambda key, data: hmac.digest(key, data, "sha256"),
}


def test_the_builtin_hmac_equals_hmac_digest_for_random_keys_and_messages() -> None:
    rng = random.Random(16)
    # key lengths around the 64-byte block (longer keys are hashed first), messages around it too
    for key_size in (0, 1, 31, 32, 33, 63, 64, 65, 100, 128, 200):
        for size in (0, 1, 50, 55, 56, 63, 64, 65, 82, 119, 540, 1400, rng.randrange(5000)):
            key, data = rng.randbytes(key_size), rng.randbytes(size)
            assert hmac256.builtin_digest(key, data) == hmac.digest(key, data, "sha256"), (key_size, size)
    for _ in range(300):
        key, data = os.urandom(rng.randrange(150)), os.urandom(rng.randrange(2000))
        assert hmac256.builtin_digest(key, data) == hmac.digest(key, data, "sha256")


def test_rfc_4231_test_case_2() -> None:
    tag = hmac256.builtin_digest(b"Jefe", b"what do ya want for nothing?")
    assert tag.hex() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def test_sha256_is_hashlibs() -> None:
    for data in (b"", b"abc", os.urandom(1000)):
        assert hmac256.sha256(data).digest() == hashlib.sha256(data).digest()


def test_verify_accepts_the_tag_and_refuses_any_other() -> None:
    key, data = os.urandom(32), os.urandom(82)
    tag = hmac.digest(key, data, "sha256")
    assert hmac256.verify(key, data, tag)
    for wrong in (tag[:-1] + bytes([tag[-1] ^ 1]), tag[:31], tag + b"\0", b""):
        assert not hmac256.verify(key, data, wrong)


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(hmac256, "digest", IMPLEMENTATIONS[request.param])
    yield request.param


def test_x1_vectors_under_each_implementation(implementation: str) -> None:
    test_x1_codec.test_extension_key_is_hmac_of_the_label_under_the_group_secret()
    test_x1_codec.test_request_vector_byte_for_byte()
    test_x1_codec.test_answer_vector_byte_for_byte()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=vectors.scenario_id)
def test_c_client_vectors_under_each_implementation(scenario: dict[str, Any], implementation: str) -> None:
    test_client_vectors.test_request_bytes_match_the_c_client(scenario)
    test_client_vectors.test_skeleton_matches_the_c_client(scenario)  # the answers' tags checked, a bad one refused


def test_a_client_process_never_loads_openssl_and_prefer_openssl_switches_to_it() -> None:
    code = ("import sys; import wgsig.client, wgsig.x1, wgsig.envelope; print('_hashlib' in sys.modules);"
            " import wgsig.hmac256 as h; h.prefer_openssl(); print(h.digest is not h.builtin_digest,"
            " h.digest(b'k' * 70, b'd') == h.builtin_digest(b'k' * 70, b'd'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "True"]


def test_importing_the_server_switches_nothing_and_wgsigd_start_up_prefers_openssl() -> None:
    """The switch is wgsigd's explicit start-up step, not a side effect of importing wgsig.server."""
    code = (
        "import wgsig.server, wgsig.hmac256 as h, sys; assert h.digest is h.builtin_digest, 'switched by import';"
        "from unittest import mock; import wgsigd.cli as cli, wgsigd.daemon as d;"
        "mock.patch.object(d.Daemon, 'run', lambda self: 0).start();"
        "mock.patch('wgsigd.activation.acquire_sockets', lambda config, bind: [None]).start();"
        "import pathlib; p = pathlib.Path(sys.argv[1]); p.write_bytes(bytes(32)); p.chmod(0o600);"
        "assert cli.main([str(p), '1223']) == 0; assert h.digest is not h.builtin_digest, 'not switched'"
    )
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-c", code, os.path.join(tmp, "secret")], capture_output=True,
                              text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr
