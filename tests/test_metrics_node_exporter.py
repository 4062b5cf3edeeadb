"""The metrics files as Debian's node-exporter reads them: the real ``prometheus-node-exporter``
binary (bookworm's, unpacked from its .deb by scripts/test.sh; ``$WGSIG_NODE_EXPORTER``) with only
its textfile collector, scraped over HTTP on loopback. The files come from the real wgsigd process
(requests over loopback UDP) and from wgsigc's writer (``wgsigc.metricsfile.write``, with a plan
built here: no WireGuard kernel module on this host).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.procs import Wgsigd, free_udp_port
from tests.test_metrics_wgsigd import config_file, request, send
from wgsig.client import GroupCredentials
from wgsig.host.configfile import MetricsDirectory
from wgsig.keys import PublicKey
from wgsigc import metricsfile
from wgsigc.candidates import Candidate
from wgsigc.plan import Action, PeerDecision, Plan

SECRET_0 = bytes(range(32))  # of the readiness probe's group 0
BINARY = os.environ.get("WGSIG_NODE_EXPORTER") or shutil.which("prometheus-node-exporter") or ""

pytestmark = pytest.mark.skipif(not os.access(BINARY, os.X_OK), reason="no prometheus-node-exporter binary")


def scrape(directory: Path) -> str:
    port = free_udp_port()  # a free number; TCP is free there too as often as not, retried below
    proc = subprocess.Popen(
        [BINARY, "--collector.disable-defaults", "--collector.textfile",
         f"--collector.textfile.directory={directory}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
                    return str(answer.read().decode())
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_node_exporter_reads_both_files_without_error(tmp_path: Path) -> None:
    port = free_udp_port()
    metrics = tmp_path / "prom"
    metrics.mkdir()
    server = Wgsigd(["--config", str(config_file(tmp_path, port, metrics))], port, GroupCredentials(0, SECRET_0),
                    tmp_path / "wgsigd.log")
    try:
        assert send(port, request(7, 1))
        assert not send(port, request(7, 1, bytes(32)), 0.2)  # bad MAC
        assert not send(port, request(99, 1), 0.2)  # no group 99: counted without a group
    finally:
        assert server.stop() == 0
    lan = Candidate(("192.168.1.7", 51820), "lan", 2.0)
    plan = Plan("wg0", None, (PeerDecision(PublicKey(bytes([1]) * 32), Action.HEALTHY, "", kernel_endpoint=lan.endpoint,
                                           candidates=(lan,), latest_handshake=int(time.time()) - 5),))
    err = io.StringIO()
    metricsfile.write(MetricsDirectory(metrics, True), "wg0", 0, time.time(), 1.5, plan, err)
    assert err.getvalue() == ""
    text = scrape(metrics)
    lines = text.splitlines()
    assert "node_textfile_scrape_error 0" in lines
    assert 'wgsigd_answers_total{group="7"} 1' in lines
    assert 'wgsigd_rejected_total{group="7",reason="bad_mac"} 1' in lines
    assert 'wgsigd_rejected_total{group="",reason="unknown_group"} 1' in lines  # node-exporter fills the label in
    assert any(line.startswith('wgsigc_peer_path{interface="wg0",kind="lan",peer="AQEB') for line in lines)
    assert 'wgsigc_last_run_exit_code{interface="wg0"} 0' in lines
    for name in ("wgsigd.prom", "wgsigc-wg0.prom"):
        assert f'node_textfile_mtime_seconds{{file="{metrics / name}"}}' in text  # 1.5.0 names the whole path
