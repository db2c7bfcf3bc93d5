"""User-facing errors: one exception family, printed by the CLI as one line, each with its exit code."""


class EdgekitError(Exception):
    """An error the user can act on (bad input, missing tool, a device that is not there)."""

    exit_code = 1

    def __init__(self, message: str, log: str | None = None):
        super().__init__(message)
        self.log = log  # a converter's captured output, shown with --debug


def first_line(e: BaseException) -> str:
    """An exception's first line (converters raise with multi-line logs), or its type if it says nothing."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class ManifestError(EdgekitError):
    """An artifact's edgekit.json is missing, unreadable, of an old schema, or names an unknown target."""


class VerificationFailed(EdgekitError):
    """The artifact is outside its precision's tolerance against PyTorch (the artifact is kept)."""

    exit_code = 3
