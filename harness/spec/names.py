"""The rule for a name that becomes a folder (results/<time>-<suite name>,
results/published/<name>): one plain path component, never '..', a separator or
NUL, so that no name can make attnbench write outside the folder it names."""
from __future__ import annotations

import re

NAME_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
NAME_RULE = "letters, digits, '-', '_' and '.', not starting with '.', at most 100 characters"


def is_safe_name(value: object) -> bool:
    return isinstance(value, str) and NAME_RE.fullmatch(value) is not None


def safe_stem(stem: str) -> str:
    """A file's stem as a safe name: each other character becomes '-'."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", stem).lstrip(".")[:100]
    return name or "suite"
