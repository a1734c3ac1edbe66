"""A suite file's values (harness/run/suite.py): the tests of one value, and the
one-line messages about them, each naming the file, the key and what is allowed and
showing the user's value escaped and cut short."""
from __future__ import annotations

import difflib
import math
import reprlib

from harness.spec.errors import UserError
from harness.spec.names import NAME_RE, NAME_RULE, is_safe_name, safe_stem  # noqa: F401


class SuiteError(UserError):
    """One-line, user-facing: names the file, the key and what is allowed."""


# Values in messages are user data: reprlib escapes newlines (one line) and
# truncates, so a huge or nested value cannot flood the message.
_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60
_repr.maxlevel = 2


def show(value: object) -> str:
    return _repr.repr(value)


def kind(value: object) -> str:
    """The TOML name of a value's type, for 'expected a table, got an array'."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, bool):
        return f"the boolean {show(value)}"
    return show(value)


def error(path: str, where: str, message: str) -> SuiteError:
    text = f"{path}: {where}: {message}" if where else f"{path}: {message}"
    # The path or a TOML parser message may itself hold a line break.
    return SuiteError(" ".join(text.splitlines()))


def hint(value: object, choices) -> str:
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown(path: str, where: str, key: object, allowed) -> SuiteError:
    return error(path, where, f"unknown key {show(key)} (allowed: {', '.join(allowed)})"
                 + hint(key, allowed))


def finite(value: object) -> float | None:
    """A TOML number as a finite float; None for anything else."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:   # an int beyond float range
        return None
    return number if math.isfinite(number) else None


def positive_int(value: object) -> bool:
    # bool is a subclass of int, but `heads = true` is a mistake, not 1.
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def among(names: tuple[str, ...]):
    """A grid check (test, what is allowed, names to suggest from): one of `names`."""
    return (lambda v: isinstance(v, str) and v in names), f"one of {', '.join(names)}", names
