"""Typed records of the bundle: frozen dataclasses whose fields are JSON values, nested records or
numpy tensors, with one generic way to write them to and read them from a manifest and a tensor file.

A field is declared with :func:`value` (a JSON scalar, tuple or mapping), :func:`tensor` (a numpy array
with a fixed dtype and rank, stored in the layer's safetensors file under the field's dotted path) or
:func:`tensor_map` (a mapping of names to float32 arrays, stored under ``<path>.<name>``). A field whose
type is a union of records is tagged: each member names its tag (``TAG``) under the union's key
(``TAG_KEY``, e.g. ``format`` for code formats). Records check themselves in ``__post_init__`` and raise
:class:`ContractError` with the dotted path of the offending field, so a problem found while reading a
bundle names the file, the layer and the field in one line.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import MISSING, dataclass, field
from typing import Any, ClassVar

import numpy as np


class ContractError(ValueError):
    """A record that breaks the bundle contract; ``path`` is the dotted field path inside the record."""

    def __init__(self, path: str, problem: str):
        self.path, self.problem = path, problem
        super().__init__(f"{path}: {problem}" if path else problem)

    def within(self, prefix: str) -> "ContractError":
        return ContractError(f"{prefix}.{self.path}" if self.path else prefix, self.problem)


@dataclass(frozen=True)
class TensorSpec:
    dtype: str
    dims: tuple[str, ...]  # axis names, for the schema doc and the rank check; "..." allows more axes

    @property
    def rank(self) -> int | None:
        return None if "..." in self.dims else len(self.dims)


def value(doc: str, default: Any = MISSING) -> Any:
    return field(default=default, metadata={"doc": doc})


def tensor(dtype: str, dims: str, doc: str, optional: bool = False) -> Any:
    """An array field; ``dims`` names its axes (``"O,C"``), ``optional`` ones default to None."""
    spec = TensorSpec(dtype, tuple(d.strip() for d in dims.split(",")) if dims else ())
    return field(default=None if optional else MISSING, metadata={"doc": doc, "tensor": spec, "optional": optional})


def tensor_map(dtype: str, doc: str) -> Any:
    return field(metadata={"doc": doc, "tensor_map": dtype})


class Record:
    """Base of every bundle record (see the module docstring)."""

    TAG_KEY: ClassVar[str | None] = None
    TAG: ClassVar[str | None] = None

    def check(self) -> None:
        """Raise ContractError for a record whose fields disagree; subclasses extend it."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            spec = f.metadata.get("tensor")
            got = getattr(self, f.name)
            if spec is not None and not (got is None and f.metadata.get("optional")):
                _check_array(got, spec, f.name)
        self.check()


def _check_array(array: Any, spec: TensorSpec, path: str) -> None:
    if not isinstance(array, np.ndarray):
        raise ContractError(path, f"must be a numpy array, got {type(array).__name__}")
    rank_ok = array.ndim == spec.rank if spec.rank is not None else array.ndim >= len(spec.dims) - 1
    if str(array.dtype) != spec.dtype or not rank_ok:
        raise ContractError(path, f"must be {spec.dtype} [{', '.join(spec.dims)}], got {array.dtype}{list(array.shape)}")


def require(condition: bool, path: str, problem: str) -> None:
    if not condition:
        raise ContractError(path, problem)


def check_range(values: np.ndarray | int, lo: int, hi: int, path: str) -> None:
    """Every value in [lo, hi]."""
    arr = np.asarray(values)
    if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
        raise ContractError(path, f"values must lie in [{lo}, {hi}], found {int(arr.min())}..{int(arr.max())}")


def check_length(array: np.ndarray, length: int, path: str, what: str) -> None:
    if array.shape[0] != length:
        raise ContractError(path, f"has {array.shape[0]} entries, expected {length} ({what})")


# ---- type introspection ----------------------------------------------------------------------------

def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def record_fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    hints = _hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if f.init]


def union_members(tp: Any) -> tuple[type, ...]:
    """The record classes of a (possibly optional) union or single record type; () for other types."""
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    members = tuple(a for a in args if isinstance(a, type) and issubclass(a, Record))
    return members


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


# ---- writing -----------------------------------------------------------------------------------------

def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def encode(record: Record, tensors: dict[str, np.ndarray], path: str = "") -> dict:
    """JSON object of ``record``'s value fields; its arrays go into ``tensors`` under dotted paths."""
    out: dict[str, Any] = {}
    if record.TAG_KEY is not None:
        out[record.TAG_KEY] = record.TAG
    for f, _ in record_fields(type(record)):
        got = getattr(record, f.name)
        where = _join(path, f.name)
        if "tensor" in f.metadata:
            if got is not None:
                tensors[where] = np.ascontiguousarray(got)
        elif "tensor_map" in f.metadata:
            for key, array in got.items():
                tensors[_join(where, key)] = np.ascontiguousarray(array)
        else:
            out[f.name] = _encode_value(got, tensors, where)
    return out


def _encode_value(got: Any, tensors: dict, path: str) -> Any:
    if isinstance(got, Record):
        return encode(got, tensors, path)
    if isinstance(got, tuple):
        return [_encode_value(v, tensors, path) for v in got]
    if isinstance(got, dict):
        return {k: _encode_value(v, tensors, _join(path, k)) for k, v in got.items()}
    return got


# ---- reading -----------------------------------------------------------------------------------------

def decode(cls: type, data: Any, tensors: dict[str, np.ndarray], path: str = "") -> Record:
    """The record of class ``cls`` from a JSON object and the layer's tensors (stored under dotted paths
    below ``path``); raises ContractError naming the dotted field path."""
    if not isinstance(data, dict):
        raise ContractError(path, f"must be a JSON object, got {type(data).__name__}")
    kwargs: dict[str, Any] = {}
    known = {cls.TAG_KEY} if cls.TAG_KEY else set()
    for f, tp in record_fields(cls):
        where = _join(path, f.name)
        known.add(f.name)
        if "tensor" in f.metadata:
            if where in tensors:
                kwargs[f.name] = tensors[where]
            elif not f.metadata.get("optional"):
                raise ContractError(where, "tensor missing from the layer file")
        elif "tensor_map" in f.metadata:
            kwargs[f.name] = {k[len(where) + 1:]: v for k, v in tensors.items() if k.startswith(f"{where}.")}
        elif f.name in data:
            kwargs[f.name] = decode_value(tp, data[f.name], tensors, where)
        elif f.default is MISSING:
            raise ContractError(where, "missing")
    unknown = sorted(set(data) - known)
    if unknown:
        raise ContractError(_join(path, unknown[0]), f"unknown field (not in the schema of {cls.__name__})")
    try:
        return cls(**kwargs)
    except ContractError as exc:
        raise (exc.within(path) if path else exc) from None


def decode_tagged(members: tuple[type, ...], data: Any, tensors: dict, path: str) -> Record:
    """The member of a tagged family that ``data`` names under the family's TAG_KEY."""
    key = members[0].TAG_KEY
    if not isinstance(data, dict):
        raise ContractError(path, f"must be a JSON object, got {type(data).__name__}")
    tags = {m.TAG: m for m in members}
    tag = data.get(key)
    if tag not in tags:
        raise ContractError(_join(path, key), f"must be one of {', '.join(map(repr, tags))}, got {tag!r}")
    return decode(tags[tag], data, tensors, path)


def decode_value(tp: Any, data: Any, tensors: dict, path: str) -> Any:
    if data is None and _is_optional(tp):
        return None
    members = union_members(tp)
    if members:
        if members[0].TAG_KEY:
            return decode_tagged(members, data, tensors, path)
        return decode(members[0], data, tensors, path)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        if not isinstance(data, list):
            raise ContractError(path, f"must be a list, got {type(data).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            items = [args[0]] * len(data)
        elif len(args) == len(data):
            items = list(args)
        else:
            raise ContractError(path, f"must have {len(args)} entries, got {len(data)}")
        return tuple(decode_value(t, v, tensors, f"{path}[{i}]") for i, (t, v) in enumerate(zip(items, data)))
    if origin is dict or tp is dict:
        if not isinstance(data, dict):
            raise ContractError(path, f"must be a JSON object, got {type(data).__name__}")
        if tp is dict:
            return data
        return {k: decode_value(args[1], v, tensors, _join(path, k)) for k, v in data.items()}
    return _scalar(tp, data, path)


def _scalar(tp: Any, data: Any, path: str) -> Any:
    if tp is bool:
        ok = isinstance(data, bool)
    elif tp is int:
        ok = isinstance(data, int) and not isinstance(data, bool)
    elif tp is float:
        ok = isinstance(data, (int, float)) and not isinstance(data, bool)
        data = float(data) if ok else data
    elif tp is str:
        ok = isinstance(data, str)
    else:
        raise TypeError(f"{path}: unsupported field type {tp}")
    if not ok:
        raise ContractError(path, f"must be {tp.__name__}, got {type(data).__name__} {str(data)[:40]!r}")
    return data
