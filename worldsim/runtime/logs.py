"""Kiosk logs: rotating files of bounded size, so a kiosk that runs for months never fills its disk.

`open_log` gives a logger writing to `DIR/NAME` rotated at `max_bytes` with `backups` old files kept (disk use
is at most (backups + 1) x max_bytes per log). A failed write (a full disk, a removed directory) is dropped
silently: logging must never be the thing that crashes a kiosk. `LogStream` turns writes to a text stream
(print, warnings) into log lines, so a kiosk player has no console output beyond its log.
"""

from __future__ import annotations

import io
import logging
import logging.handlers
from pathlib import Path

from worldsim.errors import WorldsimError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MAX_LINE_CHARS = 4000  # a runaway line (a huge repr) is cut, not allowed to fill the log by itself


class QuietRotatingFileHandler(logging.handlers.RotatingFileHandler):
    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        """Drop the record instead of printing a traceback to stderr (there is no one to read it)."""


def open_log(name: str, path: str | Path, max_bytes: int, backups: int) -> logging.Logger:
    """A logger `name` writing to the rotating file `path` only (not passed on to the root logger's console
    handlers) until `close_log`; parent directories are created."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = QuietRotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    except OSError as err:
        raise WorldsimError(f"cannot write the log {path}: {err.strerror or err}; "
                            "pass --log-dir to put the logs somewhere writable") from None
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger = logging.getLogger(name)
    close_log(logger)  # a second open in the same process replaces the first, it does not log twice
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def close_log(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.propagate = True


def clip(line: str) -> str:
    return line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + " [...]"


class LogStream(io.TextIOBase):
    """A text stream whose complete lines become log records (for redirecting stdout and stderr)."""

    def __init__(self, logger: logging.Logger, level: int = logging.INFO):
        self.logger = logger
        self.level = level
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self._pending + text).split("\n")
        self._pending = clip(lines.pop())
        for line in lines:
            if line.strip():
                self.logger.log(self.level, clip(line))
        return len(text)

    def flush(self) -> None:
        if self._pending.strip():
            self.logger.log(self.level, self._pending)
        self._pending = ""
