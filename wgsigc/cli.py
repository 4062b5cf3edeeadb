"""wgsigc's command line: the C client's form, or the kernel mode from a config file.

The systemd unit runs ``wgsigc --config FILE`` every 30 s on every peer: that form, and the
other plain kernel-mode forms, are read without argparse (``kernel_mode_args``), and print mode's
modules load only for print mode. Anything else (help, print mode, a mistake) goes to argparse.
"""

from __future__ import annotations

import sys

from wgsig.host.secretfile import SecretFileError, load_secret, resolve_secret_path
from wgsigc.exitcodes import EXIT_USAGE, WgsigcError

TYPE_CHECKING = False  # not typing's: an idle wgsigc run loads no typing module (issue 16)

if TYPE_CHECKING:
    import argparse

    from wgsigc.printmode import PrintOptions

DEFAULT_CONFIG = "/etc/wgsig/wgsigc.toml"


class UsageError(WgsigcError):
    """A command line wgsigc cannot run."""

    exit_code = EXIT_USAGE


def parser() -> argparse.ArgumentParser:
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            raise UsageError(message)

    p = _Parser(
        prog="wgsigc",
        description=(
            "wgsig client. 'wgsigc SERVER PORT PUBKEY SECRET_FILE LOCAL_PORT' prints a wg(8) skeleton as the C"
            " client does; 'wgsigc [--config FILE]' writes peer endpoints into kernel WireGuard interfaces."
        ),
        epilog=(
            "Also: 'wgsigc status [--config FILE] [--interface NAME] [--json]' shows per peer what wgsigc"
            " found and did (see wgsigc status --help)."
        ),
    )
    p.add_argument("positional", nargs="*", metavar="SERVER PORT PUBKEY_BASE64 SECRET_FILE LOCAL_PORT")
    p.add_argument("--encrypt", action="store_true", help="encrypted payloads (print mode)")
    p.add_argument("--group", type=int, default=0, help="group ID (print mode, default 0)")
    p.add_argument("--max-age", type=float, metavar="SECONDS", help="drop records older than this (print mode)")
    p.add_argument("--skip-unusable", action="store_true",
                   help="print mode: leave out peers whose endpoint cannot be reached (port 0, broadcast, multicast,"
                        " ...); the C client prints them")
    p.add_argument("--timeout", type=float, default=1.0, metavar="SECONDS", help="wait per attempt (default 1)")
    p.add_argument("--attempts", type=int, default=3, help="requests before giving up (default 3)")
    p.add_argument("--config", metavar="FILE", help=f"kernel mode configuration (default {DEFAULT_CONFIG})")
    p.add_argument("--interface", metavar="NAME", help="kernel mode: handle only this interface")
    p.add_argument("--dry-run", action="store_true", help="kernel mode: print what would change, change nothing")
    p.add_argument(
        "--check", action="store_true", help="kernel mode: validate the configuration and secret files, then exit"
    )
    return p


def kernel_mode_args(argv: list[str]) -> tuple[str | None, str | None, bool, bool] | None:
    """``(config, interface, dry_run, check)`` when ``argv`` is only kernel mode's options, each
    spelled out in full and with a value that is not an option (what argparse would read alike);
    None for anything else, which argparse then reads (help, print mode, abbreviations, mistakes)."""
    values: dict[str, str] = {}
    flags = {"--dry-run": False, "--check": False}
    rest = list(argv)
    while rest:
        token = rest.pop(0)
        if token in flags:
            flags[token] = True
            continue
        name, equals, value = token.partition("=")
        if name not in ("--config", "--interface"):
            return None
        if not equals:
            if not rest:
                return None
            value = rest.pop(0)
        if not value or value.startswith("-"):
            return None
        values[name] = value
    return values.get("--config"), values.get("--interface"), flags["--dry-run"], flags["--check"]


def print_options(args: argparse.Namespace) -> PrintOptions:
    from wgsig.client import GroupCredentials
    from wgsig.keys import PublicKey
    from wgsigc.printmode import PrintOptions

    server, port_text, pubkey, secret_file, local_text = args.positional
    port = _port(port_text, "PORT")
    local_port = _port(local_text, "LOCAL_PORT")
    peer_id = PublicKey.parse(pubkey)
    if peer_id is None:
        raise UsageError(f"PUBKEY {pubkey!r} is not a base64 WireGuard public key (44 characters, 'wg pubkey')")
    if not 0 <= args.group < 1 << 32:
        raise UsageError(f"--group {args.group} is not a 32-bit unsigned integer")
    if args.attempts < 1 or not 0 < args.timeout < float("inf"):  # float() also takes "nan" and "inf"
        raise UsageError("--attempts must be at least 1 and --timeout positive")
    if args.max_age is not None and not 0 < args.max_age < float("inf"):
        # nan, 0 or a negative age would silently drop every record
        raise UsageError(f"--max-age {args.max_age:g} is not a positive number of seconds")
    credentials = GroupCredentials(args.group, load_secret(secret_file), args.encrypt)
    return PrintOptions(server, port, peer_id, credentials, local_port, args.max_age, args.attempts, args.timeout,
                        args.skip_unusable)


def _port(text: str, name: str) -> int:
    from wgsig.endpoint import parse_port

    try:
        return parse_port(text, name)
    except ValueError as error:
        raise UsageError(str(error)) from None


def check_config(path: str, interface: str | None) -> int:
    """--check: the configuration and each interface's secret, as a run would read them.

    No netlink and no network, so it also works before the interface exists (packaging, CI).
    """
    from wgsigc.config import ConfigError, load_config  # TOML parsing: not on print mode's path

    try:
        config = load_config(path)
    except ConfigError as error:
        print(f"wgsigc: {error}", file=sys.stderr)
        return EXIT_USAGE
    interfaces = [i for i in config.interfaces if interface is None or i.name == interface]
    if not interfaces:
        print(f"wgsigc: interface {interface} is not configured in {path}", file=sys.stderr)
        return EXIT_USAGE
    for entry in interfaces:
        try:
            load_secret(resolve_secret_path(entry.secret_file))
        except SecretFileError as error:
            print(f"wgsigc: {path}: [interface.{entry.name}]: {error}", file=sys.stderr)
            return EXIT_USAGE
    print(f"{path}: OK, {len(interfaces)} interfaces")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["status"]:
            from wgsigc.status import main_status

            return main_status(argv[1:])
        kernel = kernel_mode_args(argv)
        if kernel is None:
            args = parser().parse_args(argv)
            if args.positional:
                if len(args.positional) != 5:
                    raise UsageError("print mode takes SERVER PORT PUBKEY_BASE64 SECRET_FILE LOCAL_PORT")
                if args.config or args.interface or args.dry_run or args.check:
                    raise UsageError("--config, --interface, --dry-run and --check belong to kernel mode, not print"
                                     " mode")
                from wgsigc.printmode import run_print_mode

                return run_print_mode(print_options(args))
            kernel = args.config, args.interface, args.dry_run, args.check
        config, interface, dry_run, check = kernel
        if check:
            return check_config(config or DEFAULT_CONFIG, interface)
        from wgsigc.kernelmode import run_kernel_mode

        return run_kernel_mode(config or DEFAULT_CONFIG, interface, dry_run)
    except UsageError as error:
        print(f"wgsigc: {error} (see wgsigc --help)", file=sys.stderr)
        return error.exit_code
    except SecretFileError as error:
        print(f"wgsigc: {error}", file=sys.stderr)
        return EXIT_USAGE
