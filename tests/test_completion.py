"""The bash completions packaging/bash-completion/wgsigc and wgsigd, in a real bash.

Each case sources the script in ``bash --norc`` and calls the function that its ``complete -F``
registers, with COMP_WORDS, COMP_CWORD, COMP_LINE and COMP_POINT set as readline sets them, then
reads COMPREPLY. Two setups: with Debian's bash-completion loaded (its _init_completion and
_filedir, as an interactive shell has them), and without it (the scripts' plain compgen fallback).
The option lists are checked against the programs' own argparse parsers, so an option added to a
parser and not to the completion fails here.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from wgsigc.cli import parser as wgsigc_parser
from wgsigc.status import status_parser
from wgsigd.cli import parser as wgsigd_parser

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "packaging" / "bash-completion"
BASH_COMPLETION = Path("/usr/share/bash-completion/bash_completion")
BASH = shutil.which("bash", path="/usr/bin:/bin")


@pytest.fixture(params=["bash-completion", "plain"])
def setup(request: pytest.FixtureRequest) -> str:
    if BASH is None:
        pytest.skip("no bash")
    if request.param == "bash-completion" and not BASH_COMPLETION.is_file():
        pytest.skip(f"{BASH_COMPLETION} missing (scripts/test.sh installs bash-completion)")
    return str(request.param)


def comp_words(line: str) -> list[str]:
    """The words readline gives a completion function: split at blanks, and '=' and ':' (in the
    default COMP_WORDBREAKS) as words of their own; a trailing blank starts an empty word."""
    words = []
    for token in line.split():
        words += [w for w in re.split(r"([=:])", token) if w]
    if line.endswith(" ") or not words:
        words.append("")
    return words


def complete(setup: str, line: str, cwd: Path | None = None, path: str | None = None) -> list[str]:
    """COMPREPLY for the cursor at the end of *line*."""
    command = line.split()[0]
    words = comp_words(line)
    script = "\n".join([
        f"source {BASH_COMPLETION}" if setup == "bash-completion" else "",
        # With bash-completion loaded, the completion comes from its lazy loader's directory.
        f"source {SCRIPTS / command}",
        f'spec=$(complete -p {command}) || exit 3',
        'func=$(sed -n "s/.* -F \\([^ ]*\\) .*/\\1/p" <<<"$spec")',
        'declare -F "$func" >/dev/null || exit 4',
        "COMP_WORDS=(" + " ".join(_quote(w) for w in words) + ")",
        f"COMP_CWORD={len(words) - 1}",
        f"COMP_LINE={_quote(line)}",
        "COMP_POINT=${#COMP_LINE}",
        "COMP_TYPE=9 COMP_KEY=9",
        "COMPREPLY=()",
        f'"$func" {command} {_quote(words[-1])} {_quote(words[-2] if len(words) > 1 else "")}',
        'printf "%s\\n" "${COMPREPLY[@]}"',
    ])
    env = {"PATH": path or "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(cwd or ROOT), "LC_ALL": "C"}
    proc = subprocess.run([BASH or "bash", "--norc", "--noprofile", "-c", script], cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"bash exit {proc.returncode}: {proc.stderr}"
    assert proc.stderr == "", proc.stderr
    return [w for w in proc.stdout.split("\n") if w]


def _quote(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


def options(p: argparse.ArgumentParser) -> set[str]:
    return {o for action in p._actions for o in action.option_strings}


def test_the_fallback_setup_has_no_bash_completion_helpers() -> None:
    if BASH is None:
        pytest.skip("no bash")
    proc = subprocess.run([BASH, "--norc", "--noprofile", "-c", f"source {SCRIPTS / 'wgsigc'}; declare -F"],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert "_init_completion" not in proc.stdout and "_filedir" not in proc.stdout
    assert "_wgsigc" in proc.stdout


def test_wgsigc_option_names_are_the_parsers(setup: str) -> None:
    offered = set(complete(setup, "wgsigc -"))
    assert offered == options(wgsigc_parser())
    assert complete(setup, "wgsigc --dr") == ["--dry-run"]
    assert sorted(complete(setup, "wgsigc --ma")) == ["--max-age"]


def test_wgsigd_option_names_are_the_parsers(setup: str) -> None:
    offered = set(complete(setup, "wgsigd -"))
    assert offered == options(wgsigd_parser())
    assert complete(setup, "wgsigd --st") == ["--state-dir"]


def test_wgsigc_status_subcommand(setup: str) -> None:
    assert complete(setup, "wgsigc st") == ["status"]
    assert complete(setup, "wgsigc ") == ["status"]
    # status is a subcommand only as the first word; print mode's positionals take nothing.
    assert complete(setup, "wgsigc --dry-run st") == []
    assert complete(setup, "wgsigc host st") == []


def test_wgsigc_status_flags(setup: str) -> None:
    assert set(complete(setup, "wgsigc status --")) == {o for o in options(status_parser()) if o.startswith("--")}
    assert set(complete(setup, "wgsigc status -")) == options(status_parser())
    assert complete(setup, "wgsigc status --j") == ["--json"]
    assert complete(setup, "wgsigc status --json --i") == ["--interface"]
    # Print mode's options are not status's.
    assert complete(setup, "wgsigc status --dr") == []


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "wgsigc.toml").write_text("")
    (tmp_path / "wgsigd.toml").write_text("")
    (tmp_path / "group0.key").write_text("")
    (tmp_path / "keys").mkdir()
    return tmp_path


@pytest.mark.parametrize("line", [
    "wgsigc --config ", "wgsigc --config=", "wgsigc status --config ", "wgsigc status --json --config=",
    "wgsigd --config ", "wgsigd --config=",
])
def test_config_takes_files(setup: str, tree: Path, line: str) -> None:
    assert sorted(complete(setup, line, cwd=tree)) == ["group0.key", "keys", "wgsigc.toml", "wgsigd.toml"]
    assert sorted(complete(setup, line + "wgsig", cwd=tree)) == ["wgsigc.toml", "wgsigd.toml"]


def test_files_where_the_command_lines_take_files(setup: str, tree: Path) -> None:
    # wgsigc's print mode: SECRET_FILE is the fourth positional (option values skipped).
    assert complete(setup, "wgsigc --group 7 host 1223 KEY gr", cwd=tree) == ["group0.key"]
    assert complete(setup, "wgsigc host 1223 gr", cwd=tree) == []
    assert complete(setup, "wgsigc host 1223 KEY group0.key ", cwd=tree) == []
    # wgsigd: SECRET_FILE first (with the genkey subcommand), genkey's FILE, --state-dir a directory.
    assert sorted(complete(setup, "wgsigd ", cwd=tree)) == ["genkey", "group0.key", "keys", "relay", "wgsigc.toml",
                                                            "wgsigd.toml"]
    assert sorted(complete(setup, "wgsigd g", cwd=tree)) == ["genkey", "group0.key"]
    assert complete(setup, "wgsigd genkey gr", cwd=tree) == ["group0.key"]
    assert complete(setup, "wgsigd genkey group0.key ", cwd=tree) == []
    assert complete(setup, "wgsigd --state-dir ", cwd=tree) == ["keys"]
    assert complete(setup, "wgsigd group0.key ", cwd=tree) == []  # PORT
    # wgsigd relay --config FILE
    assert complete(setup, "wgsigd relay ", cwd=tree) == ["--config"]
    assert sorted(complete(setup, "wgsigd relay --config wgsig", cwd=tree)) == ["wgsigc.toml", "wgsigd.toml"]


def test_ipv6_servers_and_base64_keys_count_as_one_argument(setup: str, tree: Path) -> None:
    # COMP_WORDS splits "fd00::1" and a key's trailing "=" into several words: still one argument each.
    key = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
    assert complete(setup, f"wgsigc fd00::1 1223 {key} gr", cwd=tree) == ["group0.key"]
    assert complete(setup, f"wgsigc --timeout 2 [fd00::1] 1223 {key} group0.key ", cwd=tree) == []


def test_numbers_take_nothing(setup: str, tree: Path) -> None:
    for option in ("--group", "--max-age", "--timeout", "--attempts"):
        assert complete(setup, f"wgsigc {option} ", cwd=tree) == []


def _fake_tools(tmp_path: Path, ip: str, wg: str) -> str:
    """A PATH whose ip(8) and wg(8) print what a host with those interfaces prints."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("ip", ip), ("wg", wg)):
        tool = bin_dir / name
        tool.write_text("#!/bin/sh\n" + body + "\n")
        tool.chmod(0o755)
    return f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin"


IP_WIREGUARD = r"""[ "$*" = "-o link show type wireguard" ] || exit 1
echo '5: wg0: <POINTOPOINT,NOARP,UP,LOWER_UP> mtu 1420 qdisc noqueue state UNKNOWN mode DEFAULT' \
    'group default qlen 1000\    link/none '
echo '9: wg-lan: <POINTOPOINT,NOARP> mtu 1420 qdisc noop state DOWN mode DEFAULT group default' \
    'qlen 1000\    link/none '"""


@pytest.mark.parametrize("prefix", ["wgsigc --interface ", "wgsigc status --interface ", "wgsigc --interface="])
def test_interface_takes_wireguard_links(setup: str, tmp_path: Path, prefix: str) -> None:
    path = _fake_tools(tmp_path, IP_WIREGUARD, "exit 1")
    assert sorted(complete(setup, prefix, path=path)) == ["wg-lan", "wg0"]
    assert complete(setup, prefix + "wg-", path=path) == ["wg-lan"]


def test_interface_from_wg_when_ip_cannot_tell(setup: str, tmp_path: Path) -> None:
    path = _fake_tools(tmp_path, "exit 1", '[ "$*" = "show interfaces" ] && echo "wg7 wg8"')
    assert sorted(complete(setup, "wgsigc --interface ", path=path)) == ["wg7", "wg8"]


def test_interface_falls_back_to_every_link(setup: str, tmp_path: Path) -> None:
    path = _fake_tools(tmp_path, "exit 0", "exit 1")  # no WireGuard link, no wg
    links = sorted(os.listdir("/sys/class/net"))
    assert sorted(complete(setup, "wgsigc --interface ", path=path)) == links
    assert "lo" in complete(setup, "wgsigc status --interface l", path=path)


def test_the_real_ip_offers_links_of_this_host(setup: str) -> None:
    """Against this host's ip(8): every name offered is a link of this host."""
    if shutil.which("ip", path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
        pytest.skip("no ip(8)")
    offered = complete(setup, "wgsigc --interface ")
    assert offered and set(offered) <= set(os.listdir("/sys/class/net"))


def test_nothing_after_help(setup: str) -> None:
    assert complete(setup, "wgsigc --help ") == []
    assert complete(setup, "wgsigd -h ") == []


def test_wgsigc_help_mentions_status() -> None:
    text = wgsigc_parser().format_help()
    assert "wgsigc status [--config FILE] [--interface NAME] [--json]" in " ".join(text.split())


def test_bash_completion_loads_the_installed_path_on_demand(tmp_path: Path) -> None:
    """Installed as share/bash-completion/completions/<command>, the lazy loader of Debian's
    bash-completion finds each script the first time its command is completed."""
    if BASH is None or not BASH_COMPLETION.is_file():
        pytest.skip(f"{BASH_COMPLETION} missing (scripts/test.sh installs bash-completion)")
    completions = tmp_path / "share" / "bash-completion" / "completions"
    completions.mkdir(parents=True)
    for command in ("wgsigc", "wgsigd"):
        shutil.copy(SCRIPTS / command, completions / command)
    script = f"""source {BASH_COMPLETION}
for command in wgsigc wgsigd; do
    complete -p $command 2>/dev/null && exit 5  # not loaded before it is needed
    __load_completion $command || exit 6
    complete -p $command
done"""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_DATA_DIRS": str(tmp_path / "share")}
    proc = subprocess.run([BASH, "--norc", "--noprofile", "-c", script], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split("\n")[:2] == ["complete -F _wgsigc wgsigc", "complete -F _wgsigd wgsigd"]
