"""How a schema (memsweep.schema) is written and checked: a setting's type with its range as annotation metadata
(Annotated[int, Ge(1)]), a group of settings, whether a value is accepted, and in words what a type accepts.

The check is written here rather than by pydantic (which it was, with the same messages): building pydantic's
models and loading its plugins took 0.065 s of every command that composes a config, more than Hydra's composition
itself (docs/measurements.md, 2026-12-03), for a check of a handful of types. Strict: an integer takes no float or
bool, a number takes integers and floats but not nan or inf, true/false only booleans, strings only strings; no
value is converted.
"""
import math
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Union


class Constraint:
    """A rule a setting's value keeps, as annotation metadata (Annotated[int, Ge(1)]). Plain classes named as
    annotated_types names them: its 30 dataclasses took 4.6 ms to import, a tenth of a dry run's imports."""
    __slots__ = ()

    def holds(self, value) -> bool:
        raise NotImplementedError


class Ge(Constraint):
    __slots__ = ("ge",)

    def __init__(self, ge):
        self.ge = ge

    def holds(self, value) -> bool:
        return value >= self.ge


class Gt(Constraint):
    __slots__ = ("gt",)

    def __init__(self, gt):
        self.gt = gt

    def holds(self, value) -> bool:
        return value > self.gt


class Le(Constraint):
    __slots__ = ("le",)

    def __init__(self, le):
        self.le = le

    def holds(self, value) -> bool:
        return value <= self.le


class Lt(Constraint):
    __slots__ = ("lt",)

    def __init__(self, lt):
        self.lt = lt

    def holds(self, value) -> bool:
        return value < self.lt


class MinLen(Constraint):
    __slots__ = ("min_length",)

    def __init__(self, min_length: int):
        self.min_length = min_length

    def holds(self, value) -> bool:
        return len(value) >= self.min_length


class Len(Constraint):
    __slots__ = ("min_length", "max_length")

    def __init__(self, min_length: int, max_length: int):
        self.min_length, self.max_length = min_length, max_length

    def holds(self, value) -> bool:
        return self.min_length <= len(value) <= self.max_length


class Predicate(Constraint):
    __slots__ = ("func",)

    def __init__(self, func):
        self.func = func

    def holds(self, value) -> bool:
        return bool(self.func(value))


@dataclass(frozen=True)
class Words:
    """What a setting accepts, in words, where its type says it badly (annotation metadata)."""
    description: str


@dataclass(frozen=True)
class Alias:
    """The setting's key in the config when it is not a Python name (`_target_`)."""
    key: str


def _metadata(tp) -> tuple:
    return typing.get_args(tp)[1:] if typing.get_origin(tp) is Annotated else ()


REQUIRED: Any = ...   # a setting every config has


@dataclass(frozen=True)
class Setting:
    """One setting of a schema: its name, its key in the config (the name unless an Alias gives another), its type
    (with its range) and its default (REQUIRED: a config must have it)."""
    name: str
    key: str
    type: Any
    default: Any = REQUIRED

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


class Group:
    """A config group's schema: each annotated class attribute a setting, in order (a subclass's settings after
    its parent's), its value if any the default. `extra`: keys beyond the settings are allowed and passed on."""
    extra: ClassVar[bool] = False
    settings: ClassVar[dict[str, Setting]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        settings = dict(cls.settings)
        for name, tp in cls.__dict__.get("__annotations__", {}).items():
            if typing.get_origin(tp) is ClassVar:
                continue
            alias = next((m.key for m in _metadata(tp) if isinstance(m, Alias)), name)
            settings[name] = Setting(name, alias, tp, cls.__dict__.get(name, REQUIRED))
        cls.settings = settings


def accepted(tp, value) -> bool:
    """Whether a value is of a type and in its range, strictly: no conversion (an int is no bool, a float no int,
    a number finite)."""
    meta = _metadata(tp)
    if meta:
        tp = typing.get_args(tp)[0]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        ok = True
    elif origin in (Union, types.UnionType):
        ok = any(accepted(arm, value) for arm in args)
    elif origin is Literal:
        ok = any(type(value) is type(a) and value == a for a in args)
    elif origin is list:
        ok = isinstance(value, list) and all(accepted(args[0], v) for v in value)
    elif origin is dict or tp is dict:
        ok = isinstance(value, dict) and all(isinstance(k, str) for k in value)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:   # bool, str, NoneType
        ok = isinstance(value, tp)
    return ok and all(m.holds(value) for m in meta if isinstance(m, Constraint))





def value_text(value) -> str:
    """A value as one writes it on the command line (null, true, [1,2]: no spaces, one word for the shell)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(map(value_text, value)) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{value_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def _bounds(meta) -> str:
    lo = next((m for m in meta if isinstance(m, (Ge, Gt))), None)
    hi = next((m for m in meta if isinstance(m, (Le, Lt))), None)
    if lo is not None and hi is not None:
        a, b = (lo.ge if isinstance(lo, Ge) else lo.gt), (hi.le if isinstance(hi, Le) else hi.lt)
        b = "2^63" if b == 2 ** 63 else f"{b:g}"
        return f" in {'[' if isinstance(lo, Ge) else '('}{a:g}, {b}{']' if isinstance(hi, Le) else ')'}"
    if lo is not None:
        return f" >= {lo.ge:g}" if isinstance(lo, Ge) else f" > {lo.gt:g}"
    if hi is not None:
        return f" <= {hi.le:g}" if isinstance(hi, Le) else f" < {hi.lt:g}"
    return ""


def describe(tp, meta=()) -> str:
    """What a type accepts, in words: 'an integer >= 1 or null', 'one of float32, bfloat16', ..."""
    meta = list(meta)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        base, *extra = args
        description = next((getattr(m, "description", None) for m in extra if getattr(m, "description", None)), None)
        return description or describe(base, [*meta, *extra])
    if origin in (Union, types.UnionType):
        parts = [", ".join(map(str, typing.get_args(a))) if typing.get_origin(a) is Literal else describe(a)
                 for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if origin is Literal:
        return "one of " + ", ".join(map(str, args)) if len(args) > 1 else str(args[0])
    if origin is list:
        length = next((m for m in meta if isinstance(m, Len)), None)
        least = next((m.min_length for m in meta if isinstance(m, MinLen)), 0)
        count = f" of {length.min_length}" if length and length.min_length == length.max_length else ""
        return f"a {'non-empty ' if least else ''}list{count}, each {describe(args[0])}"
    if origin is dict or tp is dict:
        return "a mapping"
    words = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}
    return words.get(tp, getattr(tp, "__name__", str(tp))) + ("" if tp is bool else _bounds(meta))
