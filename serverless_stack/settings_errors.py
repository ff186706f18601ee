"""One-line settings errors: the key, the value, and what is allowed, in words.

Both settings models (the pipeline's, ``serverless_stack.config``, and the toolchain's,
``serverless_stack.toolchain_config``) turn pydantic's first problem into a ``ConfigError``
here, reading the bounds, choices and keys from the model itself.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from constructs_lib import limits
from constructs_lib.limits import LimitError


class ConfigError(ValueError):
    """A setting in ``cdk.json`` is missing, unknown or out of range."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        super().__init__(f"invalid setting {key} = {value!r}: {allowed}")
        self.key = key
        self.value = value
        self.allowed = allowed


_TYPE_WORDS = {
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "dataclass_type": "must be an object",
    "model_type": "must be an object",
    "dict_type": "must be an object",
    "missing": "required",
}


def config_error(
    key: str, error: ValidationError, root: Any, words: Mapping[str, str] | None = None
) -> ConfigError:
    """The first problem pydantic found in the model ``root``, as one line naming key, value
    and what is allowed (``words``: a field's own words, by field name, where its type's would
    say less)."""
    problem = error.errors(include_url=False)[0]
    loc = [str(part) for part in problem["loc"]]
    value = problem.get("input")
    kind = problem["type"]
    raised = (problem.get("ctx") or {}).get("error")
    if isinstance(raised, LimitError):
        loc, value, allowed = [*loc, raised.argument], raised.value, raised.allowed
    elif kind in ("extra_forbidden", "unexpected_keyword_argument"):
        allowed = f"unknown key; allowed keys: {', '.join(_allowed_keys(loc[:-1], root))}"
    elif kind == "missing":
        value, allowed = None, "required"
    else:
        named = [part for part in loc if not part.isdigit()]
        allowed = _allowed_text(problem, named, root, words or {})
    return ConfigError(".".join([key, *_join_indexes(loc)]), value, allowed)


def _allowed_text(problem: Any, named: list[str], root: Any, words: Mapping[str, str]) -> str:
    """What the field allows: its own words, its choices, its bounds, or pydantic's."""
    kind = problem["type"]
    annotation = _field_types(_kind_at(named[:-1], root), extras=True).get(named[-1])
    if kind == "value_error":
        return str(problem["msg"]).removeprefix("Value error, ")
    if named[-1] in words:
        return words[named[-1]]
    if kind == "literal_error":
        return f"must be one of {', '.join(map(str, get_args(_unwrap(annotation))))}"
    bounded = limits.bounds_of(annotation) != (None, None)
    if kind in ("greater_than_equal", "less_than_equal") or (kind in _TYPE_WORDS and bounded):
        return _range_text(named, root)
    if kind in ("too_short", "too_long"):
        return f"must be 1 to {(problem.get('ctx') or {}).get('max_length', 64)} characters"
    return _TYPE_WORDS.get(kind) or problem["msg"].removeprefix("Value error, ")


def _join_indexes(loc: list[str]) -> list[str]:
    """``["schedule", "0", "cron"]`` -> ``["schedule[0]", "cron"]``."""
    joined: list[str] = []
    for part in loc:
        if part.isdigit() and joined:
            joined[-1] += f"[{part}]"
        else:
            joined.append(part)
    return joined


def _range_text(loc: list[str], root: Any) -> str:
    """``must be a number from 0.1 to 0.9``, from the ``Ge``/``Le`` bounds of the field."""
    *parent, name = [part for part in loc if not part.isdigit()]
    annotation = _field_types(_kind_at(parent, root), extras=True)[name]
    low, high = limits.bounds_of(annotation)
    word = "an integer" if _unwrap(annotation) is int else "a number"
    if low is not None and high is not None:
        return f"must be {word} from {low} to {high}"
    return f"must be {word} of at least {low}" if low is not None else f"must be at most {high}"


def _kind_at(loc: list[str], root: Any) -> Any:
    kind: Any = root
    for part in loc:
        if not part.isdigit():
            kind = _field_types(kind).get(part)
    return kind


def _allowed_keys(loc: list[str], root: Any) -> list[str]:
    """The keys the model accepts at ``loc`` (for the unknown-key message)."""
    return list(_field_types(_kind_at(loc, root)))


def _field_types(kind: Any, *, extras: bool = False) -> dict[str, Any]:
    """Field name -> annotation of a settings model or dataclass (with ``Annotated`` extras)."""
    kind = _unwrap(kind)
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return {
            n: Annotated[(f.annotation, *f.metadata)] if extras and f.metadata else f.annotation
            for n, f in kind.model_fields.items()
        }
    if dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind, include_extras=extras)
        return {f.name: hints[f.name] for f in dataclasses.fields(kind)}
    return {}


def _unwrap(kind: Any) -> Any:
    """``X | None``, ``Annotated[X, ...]`` and ``tuple[X, ...]`` -> ``X``."""
    while True:
        origin = get_origin(kind)
        if origin is Annotated:
            kind = get_args(kind)[0]
        elif origin in (types.UnionType, typing.Union):
            kind = next(a for a in get_args(kind) if a is not type(None))
        elif origin is tuple:
            kind = get_args(kind)[0]
        else:
            return kind
