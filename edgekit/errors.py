"""One exception type for every user-facing error; the CLI prints it as one line."""


class EdgekitError(Exception):
    """An error the user can act on (bad input, missing tool, failed verification)."""

    exit_code = 1
