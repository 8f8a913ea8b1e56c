"""Errors a user can cause and fix; their message is one line naming the problem."""

from __future__ import annotations

from os import PathLike
from pathlib import Path


class UserError(ValueError):
    """A mistake in the user's input (name, file, setting): shown as one line, exit code 2."""


class ScannerError(UserError):
    """A scanner name or definition file that cannot be used."""


def make_folder(folder: str | PathLike) -> Path:
    """``folder`` created with its parents; a folder that cannot be is a UserError."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {folder}: {exc.strerror}") from None
    return folder
