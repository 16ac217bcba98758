"""Errors raised for bad user input: the message names the file or field and the problem."""


class InputError(ValueError):
    """A user-supplied file, setting or model cannot be used as given."""
