"""Errors a user can cause and fix; their message is one line naming the problem."""


class UserError(ValueError):
    """A mistake in the user's input (name, file, setting): shown as one line, exit code 2."""


class ScannerError(UserError):
    """A scanner name or definition file that cannot be used."""
