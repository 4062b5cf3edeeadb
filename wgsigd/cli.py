"""wgsigd's command line.

    wgsigd SECRET_FILE [PORT] [--encrypt]   the C server's form (group 0)
    wgsigd --config FILE                    groups and settings from TOML
    wgsigd genkey FILE                      create a new group secret
    wgsigd relay --config FILE              the relay process (the file's [relay] section)
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys

from wgsig.endpoint import check_port
from wgsig.host.secretfile import SecretFileError, create_secret
from wgsigd.config import DEFAULT_PORT, ConfigError, DaemonConfig, from_command_line, load_config
from wgsigd.store import StateStoreError

log = logging.getLogger("wgsigd")

EXIT_CONFIG = 6  # the C server's exit code for unusable secrets and arguments; also an unusable state file


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wgsigd",
        description="wgsig signalling server: tells WireGuard peers each other's public endpoints.",
        epilog="Also: 'wgsigd genkey FILE' writes a new 32-byte group secret (mode 0600);"
        " 'wgsigd relay --config FILE' runs the relay (wgsigd.toml's [relay] section).",
    )
    p.add_argument("secret_file", nargs="?", metavar="SECRET_FILE", help="32-byte group secret (group 0)")
    p.add_argument("port", nargs="?", type=int, default=None, metavar="PORT", help=f"UDP port (default {DEFAULT_PORT})")
    p.add_argument("--config", metavar="FILE", help="TOML configuration (several groups, state directory, ...)")
    p.add_argument("--encrypt", action="store_true", help="encrypted payloads for group 0 (command-line form)")
    p.add_argument("--state-dir", metavar="DIR", help="where records are saved (default: $STATE_DIRECTORY, else none)")
    p.add_argument("--check", action="store_true", help="validate the configuration and secrets, then exit")
    p.add_argument("-v", "--verbose", action="store_true", help="log every datagram (debug level)")
    return p


def build_config(args: argparse.Namespace) -> DaemonConfig:
    if args.config:
        if args.secret_file or args.encrypt or args.state_dir:
            raise ConfigError("--config cannot be combined with SECRET_FILE, PORT, --encrypt or --state-dir")
        return load_config(args.config)
    if not args.secret_file:
        raise ConfigError("give SECRET_FILE [PORT], or --config FILE (see wgsigd --help)")
    port = DEFAULT_PORT if args.port is None else args.port
    try:
        check_port(port)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return from_command_line(args.secret_file, port, args.encrypt, args.state_dir)


def bind_socket(config: DaemonConfig) -> socket.socket:
    """A socket of our own, when the service manager passed none."""
    from wgsigd.shedding import enlarge_receive_buffer

    family = socket.AF_INET6 if ":" in config.listen else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    enlarge_receive_buffer(sock)  # a passed socket has the unit's ReceiveBuffer=
    try:
        if family == socket.AF_INET6:
            # listen = "::" takes IPv4 too (as ::ffff:a.b.c.d), as wgsigd.socket does.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((config.listen, config.port))
    except OSError as error:
        sock.close()
        raise ConfigError(f"cannot listen on {config.listen}:{config.port}: {error.strerror}") from None
    return sock


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["genkey"]:
        return genkey(argv[1:])
    if argv[:1] == ["relay"]:
        from wgsigd import relay

        return relay.main(argv[1:])
    args = parser().parse_args(argv)
    from wgsigd.logsetup import setup_logging

    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        config = build_config(args)
        config.load_groups()  # read and check every secret before touching the network
        for warning in config.warnings():
            log.warning("wgsigd: %s", warning)
        if args.check:
            print(f"{config.source}: OK, {len(config.groups)} groups")
            return 0
        from wgsig import hmac256
        from wgsigd.activation import acquire_sockets, service_hooks
        from wgsigd.daemon import Daemon

        # The server loads OpenSSL anyway (Signer) and tags datagram-sized messages: X1's blocks
        # (wgsig.x1) go through OpenSSL's HMAC, 2-3 times as fast as the built-in SHA-256 there.
        # Chosen here, not when wgsig.server is imported: no process-wide switch as an import's effect.
        hmac256.prefer_openssl()

        socks = acquire_sockets(config, bind_socket)
        reload = (lambda: load_config(args.config)) if args.config else (lambda: build_config(args))
        others = socks[1] if len(socks) > 1 else None
        return Daemon(config, socks[0], service_hooks(), reload, others=others).run()
    except (ConfigError, SecretFileError, StateStoreError) as error:
        log.error("wgsigd: %s", error)
        return EXIT_CONFIG


def genkey(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: wgsigd genkey FILE   (writes 32 random bytes, mode 0600)", file=sys.stderr)
        return EXIT_CONFIG
    try:
        create_secret(argv[0])
    except SecretFileError as error:
        print(f"wgsigd: {error}", file=sys.stderr)
        return EXIT_CONFIG
    return 0
