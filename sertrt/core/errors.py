"""User-facing errors: the CLI prints them as one line and exits 1 (bugs keep their traceback)."""


class SertrtError(Exception):
    """A problem with the user's input (a file, an option, a checkpoint), not a bug in sertrt."""
