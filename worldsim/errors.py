"""User-facing errors: the CLI prints their message (what is wrong, what is allowed) without a traceback."""


class WorldsimError(Exception):
    """A problem the user can fix: bad input, a missing file, a checkpoint that does not fit."""
