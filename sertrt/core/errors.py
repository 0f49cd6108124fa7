"""User-facing errors: the CLI prints them as one line and exits 1, or 3 for a failed check (bugs keep their traceback)."""


class SertrtError(Exception):
    """A problem with the user's input (a file, an option, a checkpoint), not a bug in sertrt."""


class CheckFailed(SertrtError):
    """A check ran and failed (parity, export validation): the inputs were fine, the result is not. Exit code 3."""
