"""Code fingerprints: a function's normalised source plus the user code it reaches.

The walk starts at one function, class or callable object and follows, with an
explicit worklist (no recursion, cycles allowed), the module-level names the
code reads, its closure cells and its default values:

- user functions, classes and modules are queued and their normalised source
  goes in (a class with all the methods its body defines);
- third-party code contributes ``(distribution, version)`` to ``packages``
  and only its dotted name to the digest, so an upgrade shows as an
  environment change, not a code change; standard-library code contributes
  its name only;
- other values go in through their canonical encoding; a value without one
  is noted by type (and, for an instance of a user class, by its class code
  and encodable attributes) and logged at DEBUG level.

Calls the source does not spell out (``getattr(obj, name)``, methods of
objects passed in as arguments) are not followed; ``version=`` declares them.
"""

from __future__ import annotations

import builtins
import functools
import logging
import sys
import types
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from crystallize.errors import FingerprintError, UnhashableValueError
from crystallize.fingerprint._source import (
    StaticInfo,
    assignment_sources,
    class_static,
    describe,
    function_static,
    module_static,
)
from crystallize.fingerprint.encoding import encode, tagged_digest
from crystallize.fingerprint.environment import Origin, class_origin, function_origin, module_origin, package_of

__all__ = ["CodeFingerprint", "code_fingerprint"]

logger = logging.getLogger(__name__)

_BUILTIN_TYPES = (
    types.BuiltinFunctionType,
    types.WrapperDescriptorType,
    types.MethodWrapperType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
)
_CODE_TYPES = (types.FunctionType, types.MethodType, type, functools.partial, types.ModuleType, *_BUILTIN_TYPES)
_MISSING = object()


@dataclass(frozen=True, slots=True)
class CodeFingerprint:
    """The code part of a fingerprint.

    Attributes
    ----------
    digest : str
        SHA-256 hex digest of the code (64 characters).
    packages : tuple of (str, str)
        Sorted ``(distribution, version)`` of the third-party packages the code
        references; they belong to the environment part, not to ``digest``.
    modules : tuple of str
        Sorted names of the user modules whose code went into ``digest``.
    """

    digest: str
    packages: tuple[tuple[str, str], ...] = ()
    modules: tuple[str, ...] = ()


def code_fingerprint(obj: Callable[..., object] | type, *, version: str | None = None) -> CodeFingerprint:
    """Fingerprint the code of a function, class or callable object.

    Parameters
    ----------
    obj : callable or type
        A function or lambda, a class, a bound method, a ``functools.partial``
        or an object with ``__call__`` (its class plus its encodable
        attributes).
    version : str, optional
        Declared version. When given, the digest covers only the qualified
        name and this version, and source edits are ignored.

    Returns
    -------
    CodeFingerprint
        Digest, referenced third-party packages and the user modules read.

    Raises
    ------
    FingerprintError
        If ``obj`` (or user code it references) has no readable Python
        source, e.g. a builtin or a function made by ``exec``; the message
        suggests ``version=``. Also if ``obj`` is not callable.

    Examples
    --------
    >>> import json
    >>> fp = code_fingerprint(json.dumps)
    >>> len(fp.digest), fp.packages
    (64, ())
    >>> code_fingerprint(len, version="1") == code_fingerprint(len, version="1")
    True
    >>> code_fingerprint(len)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    crystallize.errors.FingerprintError: builtins.len is built in (...); declare version='...' ...
    """
    if version is not None:
        name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
        return CodeFingerprint(tagged_digest("code-version", name, str(version)))
    if isinstance(obj, _BUILTIN_TYPES):
        raise FingerprintError(
            f"{describe(obj)} is built in (C code without Python source); "
            "declare version='...' to fingerprint it by name and version"
        )
    if not callable(obj):
        raise FingerprintError(f"code_fingerprint expects a function, class or callable, got {type(obj).__qualname__}")
    walk = _Walk()
    root = walk.root(obj)
    walk.drain()
    return walk.result(root)


def _has_hook(obj: object) -> bool:
    return not isinstance(obj, type) and hasattr(type(obj), "__crystallize_fingerprint__")


def _wrapped(obj: object) -> object:
    """``__wrapped__`` set by ``functools.wraps`` or ``lru_cache`` (never a dynamic attribute)."""
    namespace = getattr(obj, "__dict__", None)
    return namespace.get("__wrapped__", _MISSING) if isinstance(namespace, Mapping) else _MISSING


def _attributes(obj: object) -> dict[str, object]:
    try:
        return dict(vars(obj))
    except TypeError:  # no __dict__ (slots or C type)
        return {}


_MUTABLE = (dict, list, set, bytearray)


def _cell_contents(cell: types.CellType) -> object:
    try:
        return cell.cell_contents
    except ValueError:  # cell not yet bound
        return _MISSING


def _name_only(obj: object, key: str) -> bytes:
    return describe(obj).encode()


class _Walk:
    """One code fingerprint computation: a worklist of user code still to read."""

    def __init__(self) -> None:
        self._queue: deque[tuple[object, str]] = deque()
        self._seen: dict[int, object] = {}  # id -> object, which also keeps ids unique
        self._records: set[str] = set()
        self._packages: set[tuple[str, str]] = set()
        self._modules: set[str] = set()

    def root(self, obj: object) -> bytes:
        label = describe(obj)
        if not isinstance(obj, _CODE_TYPES) and not _has_hook(obj) and _wrapped(obj) is _MISSING:
            return self._instance(obj, label, label)
        return self.ref(obj, label, label)

    def drain(self) -> None:
        while self._queue:
            obj, via = self._queue.popleft()
            self._records.add(tagged_digest("code-record", *self._record(obj, via)))

    def result(self, root: bytes) -> CodeFingerprint:
        digest = tagged_digest("code", root, *sorted(self._records))
        return CodeFingerprint(digest, tuple(sorted(self._packages)), tuple(sorted(self._modules)))

    # -- references: what a name, cell or default points at ----------------------------------

    def ref(self, obj: object, key: str, via: str) -> bytes:
        """Encode what ``obj`` (found at ``key`` while reading ``via``) contributes; queue user code."""
        if _has_hook(obj):
            return self.value(obj, key, via)
        wrapped = _wrapped(obj)
        if wrapped is not _MISSING:
            return b"wrapper:" + self._plain_ref(obj, key, via) + b"|" + self.ref(wrapped, key, via)
        return self._plain_ref(obj, key, via)

    def _plain_ref(self, obj: object, key: str, via: str) -> bytes:
        if isinstance(obj, types.ModuleType):
            return self._module(obj, (), True, via)
        if isinstance(obj, types.FunctionType):
            return self._function(obj, via)
        if isinstance(obj, type):
            return self._class(obj, via)
        if isinstance(obj, types.MethodType):
            owner = self.ref(obj.__self__, f"{key}.__self__", via)
            return b"method:" + self.ref(obj.__func__, key, via) + b"|" + owner
        if isinstance(obj, functools.partial):
            arguments = self.value((obj.args, obj.keywords), f"{key}.args", via)
            return b"partial:" + self.ref(obj.func, key, via) + b"|" + arguments
        if isinstance(obj, _BUILTIN_TYPES):
            return self._builtin(obj, via)
        return self.value(obj, key, via)

    def value(self, obj: object, key: str, via: str) -> bytes:
        try:
            encoded = encode(obj, key=key, code_ref=lambda item, item_key: self.ref(item, item_key, via))
        except UnhashableValueError:
            return self._opaque(obj, key, via)
        cls = type(obj)
        if cls.__module__ != "builtins" and class_origin(cls) is Origin.USER:
            return b"value:" + self._class(cls, via) + b"|" + encoded
        return b"value:" + encoded

    def _opaque(self, obj: object, key: str, via: str) -> bytes:
        cls = type(obj)
        logger.debug("fingerprint of %s: %s (%s) has no canonical encoding; noted by type", via, key, cls)
        note = f"opaque:{describe(cls)}".encode()
        origin = class_origin(cls)
        if origin is Origin.USER:
            return note + b"|" + self._instance(obj, key, via)
        if origin is Origin.THIRD_PARTY:
            self._packages.add(package_of(cls.__module__))
        return note

    def _instance(self, obj: object, key: str, via: str) -> bytes:
        """Class code plus encodable attributes of an instance; other attributes by type only."""
        parts = [self._class(type(obj), via)]
        for name, attribute in sorted(_attributes(obj).items()):
            try:
                code_ref = functools.partial(self._ref_for, via=via)
                parts.append(name.encode() + b"=" + encode(attribute, key=f"{key}.{name}", code_ref=code_ref))
            except UnhashableValueError:
                parts.append(f"{name}=opaque:{describe(type(attribute))}".encode())
        return b"instance:" + b"|".join(parts)

    def _ref_for(self, obj: object, key: str, *, via: str) -> bytes:
        return self.ref(obj, key, via)

    def _function(self, fn: types.FunctionType, via: str) -> bytes:
        origin = function_origin(fn)
        if origin is not Origin.USER:
            return self._outside(origin, fn, fn.__module__, fn.__code__.co_filename)
        info = self._static(function_static, fn, via)
        self._enqueue(fn, fn.__module__, via)
        shallow = [[_cell_contents(c) for c in fn.__closure__ or ()], fn.__defaults__, fn.__kwdefaults__]
        try:  # tells apart closures of one factory even when they reach the record set alike
            state = encode(shallow, key=describe(fn), code_ref=_name_only)
        except UnhashableValueError:
            state = b"?"
        return f"function:{describe(fn)}:{info.digest}:".encode() + state

    def _class(self, cls: type, via: str) -> bytes:
        origin = class_origin(cls)
        if origin is not Origin.USER:
            return self._outside(origin, cls, cls.__module__, None)
        info = self._static(class_static, cls, via)
        self._enqueue(cls, cls.__module__, via)
        return f"class:{describe(cls)}:{info.digest}".encode()

    def _module(self, module: types.ModuleType, chains: tuple[tuple[str, ...], ...], bare: bool, via: str) -> bytes:
        origin = module_origin(module.__name__, getattr(module, "__file__", None))
        if origin is not Origin.USER:
            return self._outside(origin, module, module.__name__, getattr(module, "__file__", None))
        parts = [f"module:{describe(module)}".encode()]
        parts += [self._chain(module, chain, via) for chain in chains]
        if bare:  # the module object itself is used: its whole source goes in
            self._enqueue(module, module.__name__, via)
        return b"|".join(parts)

    def _chain(self, module: types.ModuleType, chain: tuple[str, ...], via: str) -> bytes:
        """Follow ``name.attr.attr`` through modules to the first object that is not one."""
        target: object = module
        used = 1
        while used < len(chain) and isinstance(target, types.ModuleType):
            target = getattr(target, chain[used], _MISSING)
            used += 1
            if target is _MISSING:
                return f"{'.'.join(chain[:used])}=missing".encode()
        dotted = ".".join(chain[:used])
        if isinstance(target, types.ModuleType):
            return f"{dotted}=".encode() + self._module(target, (), True, via)
        return f"{dotted}=".encode() + self.ref(target, dotted, via)

    def _builtin(self, obj: object, via: str) -> bytes:
        module_name = getattr(obj, "__module__", None)
        filename = getattr(sys.modules.get(module_name or ""), "__file__", None)
        origin = module_origin(module_name, filename) if module_name else Origin.STDLIB
        if origin is Origin.USER and filename:
            raise FingerprintError(
                f"{describe(obj)} (referenced by {via}) is compiled code without Python source; "
                f"declare version='...' on {via}"
            )
        return self._outside(origin, obj, module_name, filename)

    def _outside(self, origin: Origin, obj: object, module_name: str | None, filename: str | None) -> bytes:
        """Third-party code adds its package; both it and the stdlib go in by name only."""
        if origin is Origin.THIRD_PARTY:
            self._packages.add(package_of(module_name, filename))
        return f"{origin.value}:{describe(obj)}".encode()

    def _static(self, analyse: Callable[[object], StaticInfo], obj: object, via: str) -> StaticInfo:
        try:
            return analyse(obj)
        except FingerprintError as exc:
            if via == describe(obj):
                raise
            raise FingerprintError(f"{exc} [{describe(obj)} is referenced by {via}]") from exc

    def _enqueue(self, obj: object, module_name: str | None, via: str) -> None:
        if id(obj) not in self._seen:
            self._seen[id(obj)] = obj
            self._queue.append((obj, via))
            self._modules.add(module_name or "?")

    # -- records: what the source of one queued object contributes ---------------------------

    def _record(self, obj: object, via: str) -> list[bytes | str]:
        if isinstance(obj, types.FunctionType):
            return self._function_record(obj)
        if isinstance(obj, type):
            module = sys.modules.get(obj.__module__)
            namespace = vars(module) if module is not None else {}
            info = class_static(obj)
            return ["class", describe(obj), info.body, *self._globals(info, namespace, describe(obj))]
        return self._module_record(obj, via)  # type: ignore[arg-type]

    def _function_record(self, fn: types.FunctionType) -> list[bytes | str]:
        label = describe(fn)
        info = function_static(fn)
        parts: list[bytes | str] = ["function", label, info.body]
        parts += [self.ref(d, f"{label}.defaults[{i}]", label) for i, d in enumerate(fn.__defaults__ or ())]
        for name, default in sorted((fn.__kwdefaults__ or {}).items()):
            parts.append(f"{name}=".encode() + self.ref(default, f"{label}.{name}", label))
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True):
            contents = _cell_contents(cell)
            bound = b"<empty>" if contents is _MISSING else self.ref(contents, f"{label}.<closure {name}>", label)
            parts.append(f"cell {name}=".encode() + bound)
        parts += self._globals(info, fn.__globals__, label)
        return parts

    def _module_record(self, module: types.ModuleType, via: str) -> list[bytes | str]:
        try:
            body = module_static(module).body
        except FingerprintError:
            logger.debug("module %s (used by %s) has no readable source; only its name goes in", module, via)
            body = b"<no source>"
        return ["module", describe(module), body]

    def _globals(self, info: StaticInfo, namespace: Mapping[str, object], via: str) -> Iterator[bytes]:
        """One binding per module-level name the code reads; builtins contribute nothing."""
        for name in info.names:
            value = namespace.get(name, _MISSING)
            if value is _MISSING:
                if not hasattr(builtins, name):
                    yield f"{name}=unbound".encode()
                continue
            if isinstance(value, types.ModuleType):
                chains = tuple(chain for chain in info.chains if chain[0] == name)
                yield f"{name}=".encode() + self._module(value, chains, name in info.bare, via)
                continue
            if isinstance(value, _MUTABLE):
                # A mutable global is fingerprinted by the statement that defines it, so state
                # the code mutates at run time (a call counter, a cache) is not an edit.
                source = assignment_sources(namespace.get("__file__")).get(name)  # type: ignore[arg-type]
                if source is not None:
                    yield f"{name}=source:".encode() + source
                    members = value.values() if isinstance(value, dict) else value
                    for i, member in enumerate(m for m in members if callable(m)):  # e.g. a dispatch table
                        yield f"{name}[{i}]=".encode() + self.ref(member, f"{name}[{i}]", via)
                    continue
            yield f"{name}=".encode() + self.ref(value, name, via)
