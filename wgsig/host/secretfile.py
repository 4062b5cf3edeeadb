"""Group secret files: a regular file of exactly 32 bytes, private to its owner.

Each way a file can be wrong gets its own message saying what to do.
"""

from __future__ import annotations

import os
import stat

from wgsig.wire import SECRET_SIZE

TYPE_CHECKING = False  # not typing's: an idle wgsigc run loads no typing module (issue 16)
if TYPE_CHECKING:
    from collections.abc import Callable

# The shipped units pass every file F of this directory as the credential "keys_F"
# (LoadCredential=keys:/etc/wgsig/keys).
KEYS_DIRECTORY = "/etc/wgsig/keys"
_KEYS_CREDENTIAL = "keys_"


class SecretFileError(Exception):
    """A secret file that cannot be used; the message says why and what to do."""


def resolve_secret_path(name: str) -> str:
    """Where a configured secret file is.

    A bare name is a systemd credential, in ``$CREDENTIALS_DIRECTORY``.  Outside
    the unit (an admin running ``--check`` or ``--dry-run``), ``keys_F`` is the
    file ``F`` of /etc/wgsig/keys, where the credential comes from.
    """
    if "/" in name:
        return name
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials:
        return os.path.join(credentials, name)
    if name.startswith(_KEYS_CREDENTIAL) and not os.path.exists(name):
        return os.path.join(KEYS_DIRECTORY, name.removeprefix(_KEYS_CREDENTIAL))
    return name


def load_secret(path: str) -> bytes:
    """Read and check a secret file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise SecretFileError(
            f"secret file {path} does not exist: create it with 'wgsigd genkey {path}'"
            " or copy the group's secret there"
        ) from None
    except IsADirectoryError:
        raise SecretFileError(f"secret file {path} is a directory: give the path of the 32-byte secret file") from None
    except PermissionError:
        raise SecretFileError(f"secret file {path} is not readable by this user (uid {os.geteuid()})") from None
    except OSError as error:
        if error.errno == 40:  # ELOOP: O_NOFOLLOW refused a symlink
            raise SecretFileError(f"secret file {path} is a symbolic link: point to the file itself") from None
        raise SecretFileError(f"secret file {path} cannot be opened: {error.strerror}") from None
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        raise SecretFileError(f"secret file {path} is a directory: give the path of the 32-byte secret file")
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise SecretFileError(f"secret file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise SecretFileError(
                f"secret file {path} is accessible by group or others (mode {stat.S_IMODE(info.st_mode):04o}):"
                f" run 'chmod 600 {path}'"
            )
        if info.st_uid not in (0, os.geteuid()):
            raise SecretFileError(
                f"secret file {path} is owned by uid {info.st_uid}: it must belong to root or to uid {os.geteuid()}"
            )
        data = file.read(SECRET_SIZE + 1)
    if len(data) != SECRET_SIZE:
        size = info.st_size
        raise SecretFileError(
            f"secret file {path} holds {size} bytes, a secret is exactly {SECRET_SIZE}:"
            f" create one with 'wgsigd genkey FILE' (no newline, no base64)"
        )
    return data


def create_secret(path: str, random_bytes: Callable[[int], bytes] = os.urandom) -> None:
    """Write a new secret to ``path`` (mode 0600); refuses to overwrite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SecretFileError(f"{path} already exists: not overwriting a secret") from None
    except OSError as error:
        raise SecretFileError(f"cannot create {path}: {error.strerror}") from None
    with os.fdopen(fd, "wb") as file:
        file.write(random_bytes(SECRET_SIZE))
