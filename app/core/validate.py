"""Type and range checks for what DecodeLab reads back from its own files.

``fields_of(cls, d, what)`` returns the entries of ``d`` that are fields of dataclass
``cls``, each checked against the field's annotation: ``int`` (not bool) and ``float`` in a
range and finite, ``bool``, ``str``, ``None``, unions, ``Literal``, ``list[X]`` and
``dict[str, X]``; ``Any`` accepts plain JSON whose numbers are finite. Ints are made floats
where a float is expected. Anything else raises ``FormatError`` saying which field and why.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, Union, cast

INT_RANGE = (0, 2**53)  # counts, ids, sizes: never negative, exact in JSON
Range = tuple[float, float]
Checker = Callable[[object], object]


class FormatError(ValueError):
    """A stored or exported document is not what DecodeLab wrote."""


def _name(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else type(value).__name__


def _range(lo: float, hi: float) -> str:
    def num(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else f"{x:g}"

    if hi >= INT_RANGE[1]:
        return "" if lo <= -INT_RANGE[1] else f" ≥ {num(lo)}"
    return f" in {num(lo)}…{num(hi)}"


def check_int(value: object, lo: float, hi: float) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise FormatError(f"expected a whole number{_range(lo, hi)}, got {_name(value)}")
    return value


def check_float(value: object, lo: float, hi: float) -> float:
    if (not isinstance(value, int | float) or isinstance(value, bool)
            or not math.isfinite(value) or not lo <= value <= hi):
        raise FormatError(f"expected a finite number{_range(lo, hi)}, got {_name(value)}")
    return float(value)


def _plain(value: object) -> object:
    """Plain JSON with finite numbers (for free-form fields such as ``hardware``)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise FormatError(f"expected a finite number, got {value!r}")
    if isinstance(value, list):
        for v in value:
            _plain(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise FormatError("expected text keys")
            _plain(v)
    elif not (value is None or isinstance(value, str | int | float | bool)):
        raise FormatError(f"unexpected {type(value).__name__}")
    return value


def _of_type(kind: type) -> Checker:
    def check(value: object) -> object:
        if not isinstance(value, kind):
            raise FormatError(f"expected {kind.__name__}, got {_name(value)}")
        return value

    return check


def _list(item: Checker) -> Checker:
    def check(value: object) -> object:
        if not isinstance(value, list):
            raise FormatError(f"expected a list, got {_name(value)}")
        out = []
        for i, v in enumerate(value):
            try:
                out.append(item(v))
            except FormatError as exc:
                raise FormatError(f"[{i}]: {exc}") from None
        return out

    return check


def _dict(item: Checker) -> Checker:
    def check(value: object) -> object:
        if not isinstance(value, Mapping):
            raise FormatError(f"expected an object, got {_name(value)}")
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise FormatError("expected text keys")
            try:
                out[k] = item(v)
            except FormatError as exc:
                raise FormatError(f"[{k!r}]: {exc}") from None
        return out

    return check


def _union(options: list[Checker], allow_none: bool) -> Checker:
    def check(value: object) -> object:
        if value is None and allow_none:
            return None
        errors = []
        for option in options:
            try:
                return option(value)
            except FormatError as exc:
                errors.append(str(exc))
        raise FormatError(" or ".join(errors) if errors else f"expected null, got {value!r}")

    return check


def _int(lo: float, hi: float) -> Checker:
    def check(v: object) -> object:
        if type(v) is int and lo <= v <= hi:  # the common case, without a call
            return v
        return check_int(v, lo, hi)

    return check


def _float(lo: float, hi: float) -> Checker:
    def check(v: object) -> object:
        if type(v) is float and lo <= v <= hi:  # NaN and infinities fail the comparison
            return v
        return check_float(v, lo, hi)

    return check


def _literal(args: tuple[Any, ...]) -> Checker:
    def check(v: object) -> object:
        if not any(v == a and type(v) is type(a) for a in args):
            raise FormatError(f"expected one of {', '.join(map(repr, args))}, got {_name(v)}")
        return v

    return check


def checker(hint: Any, int_range: Range = INT_RANGE, float_range: Range | None = None) -> Checker:
    """A function that returns its argument checked against ``hint`` (normalised: an int
    where a float is expected becomes a float) or raises FormatError."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return _plain
    if hint is bool:
        return _of_type(bool)
    if hint is int:
        return _int(*int_range)
    if hint is float:
        return _float(*(float_range or int_range))
    if hint is str:
        return _of_type(str)
    if origin is Literal:
        return _literal(args)
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return _union([checker(a, int_range, float_range) for a in rest], len(rest) < len(args))
    if origin is list:
        return _list(checker(args[0], int_range, float_range))
    if origin is dict:
        return _dict(checker(args[1], int_range, float_range))
    raise TypeError(f"no checker for {hint!r}")


_Spec = list[tuple[str, Checker, bool]]
_CACHE: dict[tuple[Any, ...], _Spec] = {}


def _spec(cls: type, int_range: Range, float_range: Range | None,
          ranges: tuple[tuple[str, Range], ...], skip: tuple[str, ...]) -> _Spec:
    """(name, checker, required) of every field of ``cls`` that has a checker, built once."""
    key = (cls, int_range, float_range, ranges, skip)
    found = _CACHE.get(key)
    if found is None:
        hints = typing.get_type_hints(cls)
        special = dict(ranges)
        found = []
        for f in dataclasses.fields(cls):
            if not f.init or f.name not in hints or f.name in skip:
                continue
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            own = special.get(f.name)
            try:
                check = checker(hints[f.name], own or int_range, own or float_range)
            except TypeError:
                continue  # nested dataclasses: the caller checks those itself
            found.append((f.name, check, required))
        _CACHE[key] = found
    return found


def fields_of(
    cls: type,
    d: object,
    what: str,
    ranges: Mapping[str, Range] | None = None,
    int_range: Range = INT_RANGE,
    float_range: Range | None = None,
    skip: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The checked entries of mapping ``d`` that are fields of dataclass ``cls`` (unknown
    keys are left out; a missing required field is an error). ``ranges`` overrides the
    range of single numeric fields; fields in ``skip`` are left to the caller."""
    m = d if type(d) is dict else as_mapping(d, what)
    out: dict[str, Any] = {}
    frozen = tuple(sorted(ranges.items())) if ranges else ()
    for name, check, required in _spec(cls, int_range, float_range, frozen, skip):
        if name in m:
            try:
                out[name] = check(m[name])
            except FormatError as exc:
                raise FormatError(f"{what}.{name}: {exc}") from None
        elif required:
            raise FormatError(f"{what}: missing {name!r}")
    return out


def as_mapping(d: object, what: str) -> Mapping[str, Any]:
    if not isinstance(d, Mapping):
        raise FormatError(f"{what}: expected an object, got {type(d).__name__}")
    return cast(Mapping[str, Any], d)
