"""wgsigc's exit codes, shared by print mode (the C client's codes) and kernel mode, and the errors
that carry them."""

from __future__ import annotations

EXIT_OK = 0
EXIT_SOCKET = 1  # socket or netlink error, missing capability
EXIT_NO_ANSWER = 2  # no valid answer from any server
EXIT_RESOLVE = 3  # a server name does not resolve
EXIT_INTERFACE = 4  # kernel mode: interface missing, not WireGuard, changed mid-run
EXIT_PEER = 5  # kernel mode: a peer cannot be reached (hairpin or symmetric NAT, no handshake)
EXIT_USAGE = 6  # usage, configuration or secret file error


class WgsigcError(Exception):
    """An error that ends a run, and the exit code it stands for.

    Subclasses set ``exit_code`` for their kind; a message-only wrapper can pass one.  Kernel mode
    turns any of them into its run's code at one place (``kernelmode.handle_interface``).
    """

    exit_code: int = EXIT_SOCKET

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class CapabilityMissing(WgsigcError):
    """The kernel refused for lack of a capability (sockets or netlink); the message names it."""

    exit_code = EXIT_SOCKET
