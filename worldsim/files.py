"""Reading user files: regular files only, never more than a cap, and JSON that fails with a clear message.

A path a user passes (a config, a scheme, a program, an action log, a checkpoint file) may name a FIFO, which blocks
a reader forever, or a device such as /dev/zero, which never ends. Every loader checks the path with `check_regular`
before it opens anything and reads with a cap, so such a path is one clear error instead of a hang or a MemoryError.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any, BinaryIO

from worldsim.errors import WorldsimError

FILE_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
              (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class FileProblem(WorldsimError):
    """A file cannot be read as asked; `problem` is the message without the path (loaders re-raise their own type)."""

    def __init__(self, path: str | Path, problem: str):
        self.path, self.problem = path, problem
        super().__init__(f"{path}: {problem}")


def check_regular(path: str | Path, limit: int | None = None) -> int:
    """The size of `path` if it is a regular file (or a link to one) of at most `limit` bytes; else FileProblem.

    Only stat is called, so a FIFO or a device is refused before anything would block on it or read it."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FileProblem(path, "file not found") from None
    except OSError as err:
        raise FileProblem(path, f"cannot read file: {err.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in FILE_KINDS if test(info.st_mode)), "a special file")
        raise FileProblem(path, f"is {kind}, not a regular file; allowed: a regular file")
    if limit is not None and info.st_size > limit:
        raise FileProblem(path, f"file too large ({info.st_size} bytes); allowed: at most {limit} bytes")
    return info.st_size


def open_regular(path: str | Path, limit: int | None = None) -> BinaryIO:
    """Open a regular file of at most `limit` bytes for reading in binary mode (see `check_regular`)."""
    check_regular(path, limit)
    try:
        # Non-blocking: were the path swapped for a FIFO since the check, open returns at once instead of waiting
        # for a writer; the fstat below then refuses it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        raise FileProblem(path, f"cannot read file: {err.strerror}") from None
    fh = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        fh.close()
        raise FileProblem(path, "not a regular file; allowed: a regular file")
    os.set_blocking(fd, True)
    return fh


def read_bytes(path: str | Path, limit: int) -> bytes:
    """The whole of a regular file of at most `limit` bytes (read with the cap too: the file may grow)."""
    with open_regular(path, limit) as fh:
        try:
            data = fh.read(limit + 1)
        except OSError as err:
            raise FileProblem(path, f"cannot read file: {err.strerror}") from None
    if len(data) > limit:
        raise FileProblem(path, f"file too large; allowed: at most {limit} bytes")
    return data


def read_text(path: str | Path, limit: int) -> str:
    """A UTF-8 text file of at most `limit` bytes."""
    try:
        return read_bytes(path, limit).decode("utf-8")
    except UnicodeDecodeError:
        raise FileProblem(path, "file is not UTF-8 text") from None


def parse_json(text: str | bytes) -> Any:
    """`json.loads`, where every problem is a ValueError with a one-line message: a syntax error, a number with
    more digits than Python converts, or nesting deep enough to exhaust the recursion limit."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        where = f"column {err.colno}" if err.lineno == 1 else f"line {err.lineno}, column {err.colno}"
        raise ValueError(f"invalid JSON at {where}: {err.msg}") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except ValueError:  # int(): "Exceeds the limit (4300 digits) for integer string conversion"
        raise ValueError(f"a number in the JSON has too many digits; allowed: at most "
                         f"{sys.get_int_max_str_digits()} digits") from None
