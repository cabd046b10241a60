"""Private files for keys generated on first use: 0600 files in a 0700 folder, written atomically.

The dev defaults (the payload encryption keys, the token signing key) are generated the first time
a process needs them and kept in `$DISPUTEFLOW_DATA_DIR/keys/`, never in the repository. Two
processes may start together (`make run` starts the API and the worker at once): each writes a
private temporary file and links it into place, so exactly one key wins and nobody reads a
half-written file.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

KEYS_FOLDER = "keys"


def private_folder(path: Path) -> Path:
    """`path` as a folder only its owner may enter (0700), created with its parents if missing."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != 0o700:
        path.chmod(0o700)
    return path


def write_private(path: Path, content: bytes) -> None:
    """Write `path` (mode 0600) through a temporary file renamed into place; replaces an old one."""
    private_folder(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_or_create(path: Path, make: Callable[[], bytes]) -> bytes:
    """The content of the private file `path`, made by `make()` and written 0600 if it does not exist.

    A file that others may read (group or world bits) is still used, with a warning naming it.
    """
    if not path.exists():
        private_folder(path.parent)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(make())
                file.flush()
                os.fsync(file.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:  # another process made it first: use theirs
                pass
        finally:
            tmp.unlink(missing_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("key file %s is readable by others (mode %o): chmod 600 it", path, mode)
    return path.read_bytes()
