"""Validation of names that become path segments or result keys (spec section 11)."""

from __future__ import annotations

import re

from crystallize.errors import InvalidNameError

__all__ = ["BASELINE", "validate_name"]

BASELINE = "baseline"
_REPLICATE_DIR = re.compile(r"replicate_\d+")
_RESERVED = frozenset({"run.json", "metadata.json", "_manifest.json", "results.json"})


def validate_name(name: object, *, what: str = "name") -> str:
    """Return ``name`` if it can be a path segment and result key, else raise.

    Parameters
    ----------
    name : object
        The candidate; must be a non-empty ``str``.
    what : str
        What the name belongs to, used in the message (``"experiment"``, ``"treatment"``).

    Returns
    -------
    str
        The name, unchanged.

    Raises
    ------
    InvalidNameError
        If the name is empty, contains ``/``, ``\\``, NUL, ``..`` or ``" (v"``, starts with
        ``.``, looks like ``replicate_<n>``, is a reserved store file name, or is longer
        than 200 bytes in UTF-8.
    """
    if not isinstance(name, str):
        raise InvalidNameError(repr(name), f"must be a str, not {type(name).__name__}", what=what)
    problem = _problem(name)
    if problem:
        raise InvalidNameError(name, problem, what=what)
    return name


_MAX_BYTES = 200  # file systems allow 255 bytes per name; temporary files add a prefix and suffix


def _problem(name: str) -> str | None:
    if not name:
        return "must not be empty"
    if len(name.encode("utf-8")) > _MAX_BYTES:
        return f"is longer than {_MAX_BYTES} bytes (file systems limit folder names)"
    for bad in ("/", "\\", "\x00", ".."):
        if bad in name:
            return f"contains {bad!r}"
    if " (v" in name:
        return "contains ' (v', which is reserved for versioned result keys"
    if name.startswith("."):
        return "starts with '.'"
    if _REPLICATE_DIR.fullmatch(name):
        return "is reserved for replicate folders"
    if name in _RESERVED:
        return "is a reserved store file name"
    return None
