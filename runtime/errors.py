"""Errors users see as one line: what went wrong and why, never a traceback."""


class ReconError(Exception):
    """Base for every error whose message is meant for the user as-is."""


class InputError(ReconError):
    """A file, folder or argument given by the user is missing, unreadable or out of range."""


class MeshError(InputError):
    """A mesh file cannot be read or holds no usable geometry."""


class ModelError(ReconError):
    """A model folder or checkpoint is missing, incomplete, tampered with or of the wrong kind."""
