"""Read and normalise the source of functions, classes and modules.

The normal form is ``ast.dump`` without position attributes, after docstrings
are removed (and, for a function, its decorators), so comments, blank lines,
formatting and docstring edits vanish. Alongside it we keep the module-level
names the code reads, which the code fingerprint walk follows. Results are
cached per code object or class object in the per-process code cache.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass

from crystallize.errors import FingerprintError
from crystallize.fingerprint._cache import CODE_CACHE
from crystallize.fingerprint.encoding import encode

__all__ = ["USER_MODULE_PREFIX", "StaticInfo", "class_static", "describe", "function_static", "module_static",
           "portable_module_name"]

_DOC_OWNERS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


@dataclass(frozen=True, slots=True)
class StaticInfo:
    """What the source alone says about a function, class or module."""

    body: bytes  # normalised AST dump, or a code-object signature for an ambiguous lambda
    digest: str  # SHA-256 hex of body, used in references to this code
    names: tuple[str, ...]  # module-level names read, sorted
    chains: tuple[tuple[str, ...], ...]  # attribute chains rooted at those names, e.g. ("np", "mean")
    bare: frozenset[str]  # names also used other than as the root of an attribute chain


def describe(obj: object) -> str:
    """``module.qualname`` of a function, class or module, for messages.

    Parameters
    ----------
    obj : object
        A function, class, module or any object (its class's name is used).

    Returns
    -------
    str
        E.g. ``"steps.train"``, ``"steps.Model.fit"``.

    Examples
    --------
    >>> import json
    >>> describe(json.dumps), describe(json)
    ('json.dumps', 'json')
    """
    if isinstance(obj, types.ModuleType):
        return portable_module_name(obj.__name__)
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    module = getattr(obj, "__module__", None)
    return f"{portable_module_name(module)}.{name}" if module else name


USER_MODULE_PREFIX = "crystallize_user_"  # modules the YAML loader imports from experiment folders


def portable_module_name(module: str) -> str:
    """A module name without the location-specific part the YAML loader adds.

    Experiment-folder modules are imported as ``crystallize_user_<location hash>_<stem>``
    so two folders' ``steps.py`` never clash; fingerprints use ``<stem>`` only, so a graph
    folder that is copied, moved or cloned elsewhere keeps its fingerprints.

    Examples
    --------
    >>> portable_module_name("crystallize_user_0a1b2c3d4e_steps"), portable_module_name("json")
    ('steps', 'json')
    """
    if module.startswith(USER_MODULE_PREFIX):
        return module[len(USER_MODULE_PREFIX):].partition("_")[2] or module
    return module


def function_static(fn: types.FunctionType) -> StaticInfo:
    """Normalised source and referenced globals of a Python function (cached per code object).

    Parameters
    ----------
    fn : function
        A Python function or lambda. Its decorators are left out; a lambda is
        found by line in its module's source, and several lambdas on one line
        fall back to the compiled code.

    Returns
    -------
    StaticInfo
        Body bytes and digest, and the global names the code reads (names that
        the compiled code also loads, so locals and annotations are excluded).

    Raises
    ------
    FingerprintError
        If the source cannot be read or parsed; the message suggests ``version=``.
    """
    code = fn.__code__
    info = CODE_CACHE.static.get(code)
    if not isinstance(info, StaticInfo):
        info = _analyse_function(fn)
        CODE_CACHE.static.put(code, info)
    return info


def class_static(cls: type) -> StaticInfo:
    """Normalised source of a class body (every method it defines) and the names it reads.

    Parameters
    ----------
    cls : type
        A class defined in Python source (cached per class object).

    Returns
    -------
    StaticInfo
        Body bytes and digest, and every name the body loads.

    Raises
    ------
    FingerprintError
        If the source cannot be read or parsed.
    """
    info = CODE_CACHE.static.get(cls)
    if not isinstance(info, StaticInfo):
        node = _parse_one(cls, ast.ClassDef)
        names, chains, bare = _references(node)
        info = _info(_normalise(node), names, chains, bare)
        CODE_CACHE.static.put(cls, info)
    return info


def module_static(module: types.ModuleType) -> StaticInfo:
    """Normalised source of a whole module (not cached: reloading keeps the module object).

    Parameters
    ----------
    module : module
        A module with a source file.

    Returns
    -------
    StaticInfo
        Body bytes and digest; no names (a module is hashed whole, not followed).

    Raises
    ------
    FingerprintError
        If the source cannot be read or parsed.
    """
    tree = _parse(_source_of(module), module)
    return _info(_normalise(tree), set(), (), set())


def _analyse_function(fn: types.FunctionType) -> StaticInfo:
    code = fn.__code__
    node = _lambda_node(fn) if code.co_name == "<lambda>" else _parse_one(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
    global_names = set(_code_names(code))
    if node is None:  # several lambdas on one line: fall back to the compiled code
        return _info(_code_signature(code), global_names, (), global_names)
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        node.decorator_list = []
    names, chains, bare = _references(node)
    names &= global_names
    chains = tuple(chain for chain in chains if chain[0] in names)
    return _info(_normalise(node), names, chains, bare & names)


def _info(body: bytes, names: set[str], chains: tuple[tuple[str, ...], ...], bare: set[str]) -> StaticInfo:
    digest = hashlib.sha256(body).hexdigest()
    return StaticInfo(body, digest, tuple(sorted(names)), chains, frozenset(bare))


def _source_of(obj: object) -> str:
    try:
        return inspect.getsource(obj)  # type: ignore[arg-type]
    except (OSError, TypeError) as exc:
        raise FingerprintError(
            f"cannot read the source of {describe(obj)} ({exc}); declare version='...' on the step "
            "(or datasource, treatment) to fingerprint it by name and version instead"
        ) from exc


def _parse(source: str, owner: object) -> ast.Module:
    try:
        return ast.parse(textwrap.dedent(source))
    except SyntaxError:
        pass
    try:  # dedent fails when a multi-line string sits left of the code; indentation inside it is moot
        block = ast.parse("if 1:\n" + source).body[0]
    except SyntaxError as exc:
        raise FingerprintError(
            f"cannot parse the source of {describe(owner)} ({exc.msg}); declare version='...' instead"
        ) from exc
    return ast.Module(body=block.body, type_ignores=[])  # type: ignore[attr-defined]


def _parse_one(obj: object, kinds: type | tuple[type, ...]) -> ast.AST:
    tree = _parse(_source_of(obj), obj)
    if not tree.body or not isinstance(tree.body[0], kinds):
        raise FingerprintError(
            f"the source found for {describe(obj)} is not its definition; declare version='...' instead"
        )
    return tree.body[0]


def _lambda_node(fn: types.FunctionType) -> ast.Lambda | None:
    try:
        lines, _ = inspect.findsource(fn)
    except (OSError, TypeError) as exc:
        raise FingerprintError(
            f"cannot read the source of lambda {describe(fn)} ({exc}); declare version='...' instead"
        ) from exc
    try:
        tree = ast.parse("".join(lines))
    except SyntaxError:
        return None  # the file changed since import: rely on the compiled code
    line = fn.__code__.co_firstlineno
    found = [node for node in ast.walk(tree) if isinstance(node, ast.Lambda) and node.lineno == line]
    return found[0] if len(found) == 1 else None


def _normalise(node: ast.AST) -> bytes:
    for owner in ast.walk(node):
        if isinstance(owner, _DOC_OWNERS) and _has_docstring(owner.body):
            owner.body = owner.body[1:] or [ast.Pass()]
    return ast.dump(node, annotate_fields=True, include_attributes=False).encode()


def _has_docstring(body: list[ast.stmt]) -> bool:
    first = body[0] if body else None
    return (
        isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)
    )


def _references(node: ast.AST) -> tuple[set[str], tuple[tuple[str, ...], ...], set[str]]:
    """Names loaded, outermost attribute chains on names, and names used bare."""
    nodes = list(ast.walk(node))
    inner = {id(n.value) for n in nodes if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute)}
    roots: set[int] = set()
    chains: set[tuple[str, ...]] = set()
    for attr in nodes:
        if not isinstance(attr, ast.Attribute) or id(attr) in inner:
            continue
        parts, base = [attr.attr], attr.value
        while isinstance(base, ast.Attribute):
            parts.append(base.attr)
            base = base.value
        if isinstance(base, ast.Name):
            chains.add((base.id, *reversed(parts)))
            roots.add(id(base))
    loads = [n for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]
    names = {n.id for n in loads}
    bare = {n.id for n in loads if id(n) not in roots}
    return names, tuple(sorted(chains)), bare


def _nested_codes(code: types.CodeType) -> Iterator[types.CodeType]:
    stack = [code]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(const for const in current.co_consts if isinstance(const, types.CodeType))


def _code_names(code: types.CodeType) -> Iterator[str]:
    """Global and attribute names used by a code object and the code nested in it."""
    for current in _nested_codes(code):
        yield from current.co_names


def _code_signature(code: types.CodeType) -> bytes:
    """Bytecode, names and constants of a code object and its nested code, in order."""
    parts: list[bytes] = []
    for current in _nested_codes(code):
        names = (*current.co_names, "|", *current.co_varnames, "|", *current.co_freevars)
        parts += [current.co_code, "\0".join(names).encode()]
        parts += [_const_bytes(const, current.co_name) for const in current.co_consts]
    return b"\0".join(parts)


def _const_bytes(const: object, owner: str) -> bytes:
    if isinstance(const, types.CodeType):
        return b"<code>"  # its own signature follows in _nested_codes order
    if const is Ellipsis:
        return b"<ellipsis>"
    return encode(const, key=f"{owner}.co_consts", code_ref=_no_code)


def _no_code(obj: object, key: str) -> bytes:  # literal constants never hold functions
    return repr(obj).encode()


_ASSIGNMENTS: dict[tuple[str, int, int], dict[str, bytes]] = {}  # (file, mtime_ns, size) -> name -> statements


def assignment_sources(filename: str | None) -> dict[str, bytes]:
    """Normalised source of the module-level statements that bind each name in a file.

    Used for mutable module globals (a dict, list or set): their *defining source* goes
    into a fingerprint rather than their run-time value, so a counter that code mutates
    while it runs does not look like an edit, while editing the literal in the file does.
    Cached per (path, mtime, size); an unreadable file gives an empty mapping.
    """
    import os

    if not filename:
        return {}
    try:
        st = os.stat(filename)
    except OSError:
        return {}
    key = (filename, st.st_mtime_ns, st.st_size)
    found = _ASSIGNMENTS.get(key)
    if found is None:
        found = _module_assignments(filename)
        _ASSIGNMENTS[key] = found
    return found


def _module_assignments(filename: str) -> dict[str, bytes]:
    try:
        with open(filename, encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return {}
    out: dict[str, bytes] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            targets = [t for target in stmt.targets for t in ast.walk(target) if isinstance(t, ast.Name)]
        elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)) and isinstance(stmt.target, ast.Name):
            targets = [stmt.target]
        else:
            continue
        dumped = ast.dump(stmt, include_attributes=False).encode()
        for target in targets:
            out[target.id] = out.get(target.id, b"") + dumped
    return out
