"""The service manager's side: a socket passed by systemd, and sd_notify.

Minimal version: sockets are bound by wgsigd itself; systemd integration is
added on top of this module.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from wgsigd.config import DaemonConfig
from wgsigd.daemon import Hooks


def acquire_socket(config: DaemonConfig, bind: Callable[[DaemonConfig], socket.socket]) -> socket.socket:
    return bind(config)


def service_hooks() -> Hooks:
    return Hooks()
