"""Errors users see as one line: what went wrong and why, never a traceback."""


class ReconError(Exception):
    """Base for every error whose message is meant for the user as-is."""


class InputError(ReconError):
    """A file, folder or argument given by the user is missing, unreadable or out of range."""


class MeshError(InputError):
    """A mesh file cannot be read or holds no usable geometry."""


class ModelError(ReconError):
    """A model folder or checkpoint is missing, incomplete, tampered with or of the wrong kind."""


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of `error`'s message (at most `limit` characters), or its type's name when the
    message is empty: how a one-line message quotes what a library raised."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__
