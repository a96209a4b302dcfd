"""Canonical, type-tagged encoding of values, and domain-tagged SHA-256 digests.

Every encoding is one *frame*: a one-byte type tag, an 8-byte big-endian payload
length, then the payload. Frames are self-delimiting, so containers encode as
the plain concatenation of their items' frames and no two different values of
the supported types share an encoding. Equal values (in the sense a cache key
needs) share one: dict order, set order and float ``nan`` payloads do not
matter, while ``1``, ``1.0`` and ``True``, or ``[1]`` and ``(1,)``, stay apart.

Dispatch is a :func:`functools.singledispatch` with one small function per
type, preceded by three checks that must win over plain subclassing:
``__crystallize_fingerprint__`` hooks, enum members (``IntEnum`` is an ``int``)
and numpy scalars (``numpy.float64`` is a ``float``). numpy and pandas are
never imported here: their encoders are used only when the module is already in
``sys.modules``, which it must be for one of its objects to exist.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import functools
import hashlib
import math
import sys
import types
from collections.abc import Callable, Mapping, Set
from pathlib import PurePath, PureWindowsPath

from crystallize.errors import FingerprintError, UnhashableValueError

__all__ = ["CodeRef", "canonical", "encode", "tagged_digest", "value_digest"]

#: Encodes a function or class met inside a value: ``(obj, key) -> bytes``.
CodeRef = Callable[[object, str], bytes]

_LENGTH_BYTES = 8


def tagged_digest(tag: str, *parts: bytes | str) -> str:
    """SHA-256 over a domain tag and length-prefixed parts.

    Parameters
    ----------
    tag : str
        Domain tag naming what is hashed (``"value"``, ``"code"``, ``"step"``),
        so digests of different kinds can never collide.
    *parts : bytes or str
        Payloads; ``str`` is UTF-8 encoded and tagged apart from ``bytes``.

    Returns
    -------
    str
        Hex digest, 64 characters.

    Raises
    ------
    TypeError
        If a part is neither ``bytes`` nor ``str``.

    Examples
    --------
    >>> len(tagged_digest("value", b"abc"))
    64
    >>> tagged_digest("a", "bc") == tagged_digest("ab", "c")
    False
    >>> tagged_digest("t", "x") == tagged_digest("t", b"x")
    False
    """
    hasher = hashlib.sha256(_frame(b"#", tag.encode("utf-8")))
    for part in parts:
        if isinstance(part, str):
            hasher.update(_frame(b"s", part.encode("utf-8", "surrogatepass")))
        elif isinstance(part, (bytes, bytearray, memoryview)):
            hasher.update(_frame(b"b", bytes(part)))
        else:
            raise TypeError(f"tagged_digest parts must be bytes or str, got {type(part).__qualname__}")
    return hasher.hexdigest()


def canonical(value: object, *, key: str = "") -> bytes:
    """Encode a value canonically: equal values give equal bytes.

    Parameters
    ----------
    value : object
        ``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``, ``bytes``,
        ``list``, ``tuple``, mappings, sets, paths, enum members, dataclass
        instances, dates and times, ``Decimal``, numpy arrays and scalars,
        pandas objects, functions and classes (their code fingerprint), or an
        object with a ``__crystallize_fingerprint__()`` method returning
        ``bytes`` or ``str``. Containers may nest any of these.
    key : str, optional
        Where the value was found, e.g. ``"params"``; nested items extend it
        (``"params.model[2]"``) in error messages.

    Returns
    -------
    bytes
        The encoding.

    Raises
    ------
    UnhashableValueError
        If the value, or anything inside it, has no canonical encoding (this
        includes a function whose source cannot be read); ``.key`` is the path
        to the offending item.
    FingerprintError
        If a ``__crystallize_fingerprint__`` hook returns neither bytes nor str.

    Examples
    --------
    >>> canonical({"a": 1, "b": 2}) == canonical({"b": 2, "a": 1})
    True
    >>> canonical([1]) == canonical((1,))
    False
    >>> len({canonical(1), canonical(1.0), canonical(True)})
    3
    >>> canonical({"model": [1, 2, object()]}, key="params")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    crystallize.errors.UnhashableValueError: value for key 'params.model[2]' ...
    """
    return encode(value, key=key, code_ref=_code_fingerprint_ref)


def value_digest(value: object, *, key: str = "") -> str:
    """Digest of a value's canonical encoding: ``tagged_digest("value", canonical(value))``.

    Parameters
    ----------
    value : object
        Any value :func:`canonical` accepts.
    key : str, optional
        Path named in errors.

    Returns
    -------
    str
        Hex SHA-256 digest, 64 characters.

    Raises
    ------
    UnhashableValueError
        If the value has no canonical encoding.

    Examples
    --------
    >>> value_digest({"lr": 0.1}) == value_digest({"lr": 0.1})
    True
    >>> value_digest(0.0) == value_digest(-0.0)
    False
    """
    return tagged_digest("value", canonical(value, key=key))


def encode(value: object, *, key: str, code_ref: CodeRef) -> bytes:
    """Encode ``value`` like :func:`canonical`, with ``code_ref`` encoding functions and classes.

    Parameters
    ----------
    value : object
        The value to encode.
    key : str
        Path named in errors.
    code_ref : callable
        ``code_ref(obj, key) -> bytes`` for functions and classes met inside the
        value; the code fingerprint walk passes one that queues them instead of
        fingerprinting them on the spot, which keeps cycles finite.

    Returns
    -------
    bytes
        The encoding.

    Raises
    ------
    UnhashableValueError
        If the value, or anything inside it, has no canonical encoding.

    Examples
    --------
    >>> seen = []
    >>> _ = encode({"cls": [dict]}, key="p", code_ref=lambda obj, key: seen.append(key) or b"ref")
    >>> seen
    ['p.cls[0]']
    """
    hook = getattr(type(value), "__crystallize_fingerprint__", None)
    if hook is not None and not isinstance(value, type):
        return _encode_hook(value, key)
    if isinstance(value, enum.Enum):
        return _encode_enum(value)
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.generic) and not isinstance(value, (str, bytes)):
        return _encode_numpy_scalar(value, key, numpy)
    return _by_type(value, key, code_ref)


def _frame(tag: bytes, payload: bytes) -> bytes:
    return tag + len(payload).to_bytes(_LENGTH_BYTES, "big") + payload


def _code_fingerprint_ref(obj: object, key: str) -> bytes:
    from crystallize.fingerprint.code import code_fingerprint  # code.py imports this module

    try:
        return code_fingerprint(obj).digest.encode("ascii")  # type: ignore[arg-type]
    except FingerprintError as exc:
        raise UnhashableValueError(key, obj) from exc


def _qualified(cls: type) -> bytes:
    from crystallize.fingerprint._source import portable_module_name

    return f"{portable_module_name(cls.__module__)}.{cls.__qualname__}".encode()


def _encode_hook(value: object, key: str) -> bytes:
    result = value.__crystallize_fingerprint__()  # type: ignore[attr-defined]
    if isinstance(result, str):
        result = result.encode("utf-8", "surrogatepass")
    if not isinstance(result, (bytes, bytearray)):
        raise FingerprintError(
            f"{type(value).__qualname__}.__crystallize_fingerprint__() for key {key!r} returned "
            f"{type(result).__qualname__}; it must return bytes or str"
        )
    return _frame(b"H", _frame(b"n", _qualified(type(value))) + _frame(b"v", bytes(result)))


def _encode_enum(value: enum.Enum) -> bytes:
    return _frame(b"M", _frame(b"n", _qualified(type(value))) + _frame(b"v", value.name.encode()))


def _item_key(key: str, name: object) -> str:
    if isinstance(name, str) and name.isidentifier():
        return f"{key}.{name}" if key else name
    return f"{key}[{name!r}]"


@functools.singledispatch
def _by_type(value: object, key: str, code_ref: CodeRef) -> bytes:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _encode_dataclass(value, key, code_ref)
    optional = _optional_encoder(value)
    if optional is not None:
        return optional(value, key, code_ref)
    raise UnhashableValueError(key, value)


@_by_type.register(type(None))
def _encode_none(value: None, key: str, code_ref: CodeRef) -> bytes:
    return _frame(b"N", b"")


@_by_type.register(bool)
def _encode_bool(value: bool, key: str, code_ref: CodeRef) -> bytes:
    return _frame(b"B", b"1" if value else b"0")


@_by_type.register(int)
def _encode_int(value: int, key: str, code_ref: CodeRef) -> bytes:
    # to_bytes sidesteps the int -> str digit limit of Python 3.11+
    return _frame(b"I", value.to_bytes((value.bit_length() + 8) // 8, "big", signed=True))


def _float_text(value: float) -> bytes:
    return b"nan" if math.isnan(value) else repr(value).encode()


@_by_type.register(float)
def _encode_float(value: float, key: str, code_ref: CodeRef) -> bytes:
    return _frame(b"F", _float_text(value))


@_by_type.register(complex)
def _encode_complex(value: complex, key: str, code_ref: CodeRef) -> bytes:
    return _frame(b"C", _frame(b"r", _float_text(value.real)) + _frame(b"i", _float_text(value.imag)))


@_by_type.register(str)
def _encode_str(value: str, key: str, code_ref: CodeRef) -> bytes:
    return _frame(b"S", value.encode("utf-8", "surrogatepass"))


@_by_type.register(bytes)
@_by_type.register(bytearray)
def _encode_bytes(value: bytes, key: str, code_ref: CodeRef) -> bytes:
    return _frame(b"Y", bytes(value))


@_by_type.register(list)
def _encode_list(value: list[object], key: str, code_ref: CodeRef) -> bytes:
    return _frame(b"L", b"".join(encode(v, key=f"{key}[{i}]", code_ref=code_ref) for i, v in enumerate(value)))


@_by_type.register(tuple)
def _encode_tuple(value: tuple[object, ...], key: str, code_ref: CodeRef) -> bytes:
    return _frame(b"T", b"".join(encode(v, key=f"{key}[{i}]", code_ref=code_ref) for i, v in enumerate(value)))


@_by_type.register(Mapping)
def _encode_mapping(value: Mapping[object, object], key: str, code_ref: CodeRef) -> bytes:
    items = []
    for name, item in value.items():
        item_key = _item_key(key, name)
        items.append(encode(name, key=item_key, code_ref=code_ref) + encode(item, key=item_key, code_ref=code_ref))
    return _frame(b"D", b"".join(sorted(items)))


@_by_type.register(Set)
def _encode_set(value: Set[object], key: str, code_ref: CodeRef) -> bytes:
    # set and frozenset compare equal in Python, so they share a tag
    items = sorted(encode(v, key=f"{key}{{}}", code_ref=code_ref) for v in value)
    return _frame(b"E", b"".join(items))


@_by_type.register(PurePath)
def _encode_path(value: PurePath, key: str, code_ref: CodeRef) -> bytes:
    flavour = b"windows" if isinstance(value, PureWindowsPath) else b"posix"
    return _frame(b"P", _frame(b"f", flavour) + _frame(b"p", value.as_posix().encode("utf-8", "surrogatepass")))


@_by_type.register(datetime.date)
@_by_type.register(datetime.time)
def _encode_datetime(value: datetime.date | datetime.time, key: str, code_ref: CodeRef) -> bytes:
    # datetime is a date subclass; the class name keeps the two apart
    return _frame(b"W", _frame(b"n", type(value).__name__.encode()) + _frame(b"v", value.isoformat().encode()))


@_by_type.register(datetime.timedelta)
def _encode_timedelta(value: datetime.timedelta, key: str, code_ref: CodeRef) -> bytes:
    return _frame(b"U", f"{value.days},{value.seconds},{value.microseconds}".encode())


@_by_type.register(decimal.Decimal)
def _encode_decimal(value: decimal.Decimal, key: str, code_ref: CodeRef) -> bytes:
    return _frame(b"Q", str(value).encode())


@_by_type.register(types.FunctionType)
@_by_type.register(type)
def _encode_code(value: object, key: str, code_ref: CodeRef) -> bytes:
    return _frame(b"K", code_ref(value, key))


@_by_type.register(types.MethodType)
def _encode_method(value: types.MethodType, key: str, code_ref: CodeRef) -> bytes:
    func = _encode_code(value.__func__, key, code_ref)
    return _frame(b"O", func + encode(value.__self__, key=f"{key}.__self__", code_ref=code_ref))


@_by_type.register(functools.partial)
def _encode_partial(value: functools.partial[object], key: str, code_ref: CodeRef) -> bytes:
    func = encode(value.func, key=f"{key}.func", code_ref=code_ref)
    args = encode(value.args, key=f"{key}.args", code_ref=code_ref)
    return _frame(b"R", func + args + encode(value.keywords, key=f"{key}.keywords", code_ref=code_ref))


@_by_type.register(types.BuiltinFunctionType)
def _encode_builtin(value: types.BuiltinFunctionType, key: str, code_ref: CodeRef) -> bytes:
    owner = value.__self__
    if owner is not None and not isinstance(owner, types.ModuleType):
        raise UnhashableValueError(key, value)  # a method bound to some object: state unknown
    return _frame(b"Z", f"{value.__module__}.{value.__qualname__}".encode())


def _encode_dataclass(value: object, key: str, code_ref: CodeRef) -> bytes:
    fields = b"".join(
        _frame(b"n", field.name.encode())
        + encode(getattr(value, field.name), key=f"{key}.{field.name}", code_ref=code_ref)
        for field in dataclasses.fields(value)  # type: ignore[arg-type]
    )
    return _frame(b"A", _frame(b"n", _qualified(type(value))) + fields)


# -- numpy and pandas, used only when already imported -------------------------------------------


def _optional_encoder(value: object) -> Callable[[object, str, CodeRef], bytes] | None:
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray):
        return _encode_ndarray
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(value, (pandas.DataFrame, pandas.Series, pandas.Index)):
        return _encode_pandas
    return None


def _encode_numpy_scalar(value: object, key: str, numpy: types.ModuleType) -> bytes:
    array = numpy.asarray(value)
    if array.dtype.kind == "O":
        raise UnhashableValueError(key, value)
    return _frame(b"G", _frame(b"d", _dtype_text(array)) + _frame(b"v", _native(array).tobytes()))


def _native(array: object) -> object:
    dtype = array.dtype  # type: ignore[attr-defined]
    if dtype.fields is None and not dtype.isnative:
        return array.astype(dtype.newbyteorder("="))  # type: ignore[attr-defined]
    return array


def _dtype_text(array: object) -> bytes:
    dtype = _native(array).dtype  # type: ignore[attr-defined]
    return (repr(dtype.descr) if dtype.fields is not None else dtype.str).encode()


def _encode_ndarray(value: object, key: str, code_ref: CodeRef) -> bytes:
    numpy = sys.modules["numpy"]
    array = numpy.ascontiguousarray(value)
    shape = _frame(b"s", ",".join(str(n) for n in array.shape).encode())
    if array.dtype.kind == "O":  # Python objects: encode each item
        items = encode(array.ravel().tolist(), key=key, code_ref=code_ref)
        return _frame(b"X", _frame(b"d", b"object") + shape + items)
    data = _frame(b"v", _native(array).tobytes())
    return _frame(b"X", _frame(b"d", _dtype_text(array)) + shape + data)


def _encode_pandas(value: object, key: str, code_ref: CodeRef) -> bytes:
    pandas = sys.modules["pandas"]
    kind = _frame(b"n", type(value).__name__.encode())
    if isinstance(value, pandas.DataFrame):
        columns = b"".join(
            encode(name, key=key, code_ref=code_ref)
            + _encode_column(value.iloc[:, i], _item_key(key, name), code_ref)
            for i, name in enumerate(value.columns)
        )
        index = _encode_pandas(value.index, f"{key}.index", code_ref)
        return _frame(b"V", kind + _frame(b"c", columns) + index)
    name = encode(value.name, key=f"{key}.name", code_ref=code_ref)  # type: ignore[attr-defined]
    if isinstance(value, pandas.Series):
        index = _encode_pandas(value.index, f"{key}.index", code_ref)
        return _frame(b"V", kind + name + _encode_column(value, key, code_ref) + index)
    return _frame(b"V", kind + name + _encode_column(value, key, code_ref))


def _encode_column(column: object, key: str, code_ref: CodeRef) -> bytes:
    dtype = _frame(b"d", str(column.dtype).encode())  # type: ignore[attr-defined]
    values = column.to_numpy()  # type: ignore[attr-defined]
    return dtype + _encode_ndarray(values, key, code_ref)
