"""Errors raised for bad user input: the message names the file or field and the problem.

A message quotes what it found through `quoted`, never through a bare `repr`/`str`: user input is
unbounded (a persona prompt of megabytes, a YAML alias bomb of 4×10⁸ list leaves sharing
references), and an error that expands it fills the memory and the logs before anyone reads it.
"""

from __future__ import annotations

import reprlib
from typing import Any

MAX_QUOTED_CHARS = 300  # the most of one quoted value an error message shows


class InputError(ValueError):
    """A user-supplied file, setting or model cannot be used as given."""


def _bounded_repr() -> reprlib.Repr:
    # reprlib visits at most maxlevel levels and maxlist items per level, so the cost does not depend
    # on the size of the value (shared references are not followed past those limits either).
    shortener = reprlib.Repr()
    shortener.maxlevel = 3
    shortener.maxlist = shortener.maxtuple = shortener.maxset = shortener.maxfrozenset = shortener.maxdict = 20
    shortener.maxstring = shortener.maxother = shortener.maxlong = MAX_QUOTED_CHARS
    return shortener


_SHORTENER = _bounded_repr()


def type_name(value: Any) -> str:
    """What a value is, for 'must be a string, found …' (never its content)."""
    return type(value).__name__


def quoted(value: Any, limit: int = MAX_QUOTED_CHARS) -> str:
    """`repr(value)` for an error message, at most about `limit` characters, in time and memory that
    do not depend on the size of `value`; a cut says so and how long the whole was when that is cheap."""
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}… ({len(value)} characters in all)"
    text = _SHORTENER.repr(value)
    sized = isinstance(value, (list, tuple, dict, set, frozenset))
    size = f" ({type_name(value)} of {len(value)} items)" if sized else ""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…{size}"
