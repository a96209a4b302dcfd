"""Where code comes from (the user's modules, third-party packages, the standard library),
and the environment part of a fingerprint.

Only the user's own code is hashed. A third-party package contributes its
distribution name and version; the standard library contributes nothing, as the
Python version stands for it. ``crystallize`` itself counts as a third-party
package wherever it is installed, so framework internals never enter a step's
code digest.
"""

from __future__ import annotations

import enum
import importlib.metadata
import os
import platform
import sys
import sysconfig
import types
from collections.abc import Iterable

from crystallize.fingerprint._cache import CODE_CACHE

__all__ = [
    "Origin",
    "class_origin",
    "environment_fingerprint",
    "function_origin",
    "module_origin",
    "package_of",
]

_SITE_DIRS = frozenset({"site-packages", "dist-packages"})
_FRAMEWORK = "crystallize"


def _stdlib_dirs() -> tuple[str, ...]:
    found = {sysconfig.get_paths()["stdlib"], os.path.dirname(os.__file__)}
    found |= {os.path.realpath(path) for path in found}
    return tuple(sorted(path.rstrip(os.sep) + os.sep for path in found))


_STDLIB_DIRS = _stdlib_dirs()


class Origin(enum.Enum):
    """What a piece of code contributes to a fingerprint."""

    USER = "user"  # its source goes in
    THIRD_PARTY = "third-party"  # its distribution name and version go in
    STDLIB = "stdlib"  # nothing goes in: the Python version covers it


def module_origin(module_name: str | None, filename: str | None) -> Origin:
    """Classify code by the module that defines it and the file it came from.

    Parameters
    ----------
    module_name : str or None
        Dotted module name, e.g. ``"numpy.linalg"``.
    filename : str or None
        The module's ``__file__`` or a function's ``co_filename``.

    Returns
    -------
    Origin
        ``THIRD_PARTY`` for files under a ``site-packages``/``dist-packages``
        folder (and for ``crystallize``), ``STDLIB`` for the standard library,
        frozen modules and built-in modules, else ``USER``. A pseudo file name
        such as ``"<string>"`` (code made by ``exec``) is ``USER``: its source
        is then looked for, and its absence reported.

    Examples
    --------
    >>> module_origin("json", None).name, module_origin("mine", "/work/mine.py").name
    ('STDLIB', 'USER')
    >>> module_origin("numpy", "/venv/lib/python3.11/site-packages/numpy/__init__.py").name
    'THIRD_PARTY'
    """
    top = (module_name or "").partition(".")[0]
    if top == _FRAMEWORK:
        return Origin.THIRD_PARTY
    if not filename:
        return Origin.STDLIB if top in sys.stdlib_module_names else Origin.USER
    if filename.startswith("<"):
        return Origin.STDLIB if filename.startswith("<frozen") else Origin.USER
    origin = CODE_CACHE.origins.get(filename)
    if not isinstance(origin, Origin):
        origin = CODE_CACHE.origins[filename] = _path_origin(filename)
    return origin


def _path_origin(filename: str) -> Origin:
    normalised = os.path.abspath(filename)
    if _SITE_DIRS.intersection(normalised.split(os.sep)):
        return Origin.THIRD_PARTY
    if normalised.startswith(_STDLIB_DIRS) or os.path.realpath(normalised).startswith(_STDLIB_DIRS):
        return Origin.STDLIB
    return Origin.USER


def function_origin(fn: types.FunctionType) -> Origin:
    """Classify a Python function by the file its code object was compiled from.

    Parameters
    ----------
    fn : function
        A Python function (not a builtin).

    Returns
    -------
    Origin
        As :func:`module_origin` for ``fn.__module__`` and ``co_filename``.

    Examples
    --------
    >>> import json
    >>> function_origin(json.dumps).name
    'STDLIB'
    """
    return module_origin(fn.__module__, fn.__code__.co_filename)


def class_origin(cls: type) -> Origin:
    """Classify a class by the file of the module that defines it.

    Parameters
    ----------
    cls : type
        Any class.

    Returns
    -------
    Origin
        As :func:`module_origin` for the module named by ``cls.__module__``.

    Examples
    --------
    >>> import collections
    >>> class_origin(collections.OrderedDict).name, class_origin(int).name
    ('STDLIB', 'STDLIB')
    """
    module = sys.modules.get(cls.__module__)
    return module_origin(cls.__module__, getattr(module, "__file__", None))


def package_of(module_name: str | None, filename: str | None = None) -> tuple[str, str]:
    """Distribution name and version of the package a third-party module belongs to.

    Parameters
    ----------
    module_name : str or None
        Dotted module name; its top-level package is looked up.
    filename : str, optional
        Used to find the top-level package when ``module_name`` is missing.

    Returns
    -------
    tuple of (str, str)
        ``(distribution, version)``, e.g. ``("scikit-learn", "1.5.0")``; the
        top-level name and ``"unknown"`` when no installed metadata matches.

    Examples
    --------
    >>> import numpy
    >>> package_of("numpy.linalg") == ("numpy", numpy.__version__)
    True
    """
    top = (module_name or "").partition(".")[0] or _top_from_path(filename)
    cached = CODE_CACHE.packages.get(top)
    if cached is None:
        cached = CODE_CACHE.packages[top] = _lookup_package(top)
    return cached


def _top_from_path(filename: str | None) -> str:
    parts = os.path.abspath(filename or "?").split(os.sep)
    for index, part in enumerate(parts[:-1]):
        if part in _SITE_DIRS:
            return os.path.splitext(parts[index + 1])[0]
    return parts[-1]


def _lookup_package(top: str) -> tuple[str, str]:
    if CODE_CACHE.distributions is None:
        CODE_CACHE.distributions = dict(importlib.metadata.packages_distributions())
    names = sorted(CODE_CACHE.distributions.get(top, [])) or [top]
    try:
        return names[0], importlib.metadata.version(names[0])
    except importlib.metadata.PackageNotFoundError:
        version = getattr(sys.modules.get(top), "__version__", None)
        return names[0], version if isinstance(version, str) else "unknown"


def environment_fingerprint(packages: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The environment part of a fingerprint: Python version plus package versions.

    Parameters
    ----------
    packages : iterable of (str, str)
        ``(distribution, version)`` pairs, e.g. ``CodeFingerprint.packages``
        of every step.

    Returns
    -------
    dict of str to str
        ``{"python": "3.11.7", "<distribution>": "<version>", ...}``, with the
        packages in sorted order after ``"python"``.

    Examples
    --------
    >>> import platform
    >>> env = environment_fingerprint([("numpy", "2.0.0"), ("attrs", "23.1")])
    >>> list(env) == ["python", "attrs", "numpy"], env["python"] == platform.python_version()
    (True, True)
    """
    environment = {"python": platform.python_version()}
    for name, version in sorted(set(packages)):
        if name != "python":
            environment[name] = version
    return environment
