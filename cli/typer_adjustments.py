"""What `recon-cli` adjusts in typer, in one place: the exceptions of the click it runs on (to print
usage errors as one `error:` line) and the value names its help shows.

Nothing heavy loads here (`--help` stays instant).
"""

from __future__ import annotations

from pathlib import Path


def click_exceptions():
    """The exceptions of the click that typer runs on: its own vendored copy in recent typer, else click's."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return exceptions


METAVARS = {int: "INTEGER", float: "FLOAT", str: "TEXT", Path: "PATH"}


def plain_metavars(command) -> None:
    """Help shows click's value names (PATH, INTEGER, TEXT; nothing after a flag), not typer's
    `<bool>` / `<list[Path]>` type labels."""
    import typing

    for param in command.get_params(command.context_class(command)):  # with --help, added per context
        if getattr(param, "is_flag", False):
            param.metavar = ""
        elif param.metavar is None and param.param_type_name == "argument":
            param.metavar = param.name.upper()
            if hasattr(param, "display_type_rich"):  # typer's help would add a `<list[str]>` type column
                param.display_type_rich = lambda ctx: None
        elif param.metavar is None:
            annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
            annotation = (typing.get_args(annotation) or [annotation])[0]  # list[Path] -> Path
            param.metavar = METAVARS.get(annotation) or param.type.name.split()[0].upper()
    for sub in getattr(command, "commands", {}).values():
        plain_metavars(sub)
