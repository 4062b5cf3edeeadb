"""Loader for the datagrams recorded from the C programs (tests/vectors/c-reference.json)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).parent / "vectors" / "c-reference.json"


@cache
def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text())
    return data


def secret() -> bytes:
    return bytes.fromhex(load()["secret_hex"])


def fake_time() -> int:
    return int(load()["server_fake_time_unix"])


def server_scenarios() -> list[dict[str, Any]]:
    return [s for variant in load()["server_vectors"].values() for s in variant]


def client_scenarios() -> list[dict[str, Any]]:
    return [s for variant in load()["client_vectors"].values() for s in variant]


def scenario_id(scenario: dict[str, Any]) -> str:
    return f"{scenario['variant']}-{scenario['name']}"
