"""Checking a set of training options (``models.options.TrainOptions``) and saying
what is wrong in the words of the interface that gave it: ``--image-size`` on the
command line, ``image_size`` in a job file, ``options.image_size`` over HTTP. No
TensorFlow here: ``ktl train`` refuses a bad setting before importing it."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, get_args, get_origin

import annotated_types
from pydantic import ValidationError

from models.errors import ConfigError, KtlError, did_you_mean
from models.options import TrainOptions, Via
from models.store import validate_name
from models.store.location import UnsupportedStore, check_location

__all__ = ["describe", "parse", "spell"]


def spell(name: str, via: Via) -> str:
    """How the interface ``via`` names the option ``name``."""
    if via == "cli":
        return "DATA" if name == "data" else f"--{name.replace('_', '-')}"
    return f"options.{name}" if via == "http" else name


Speller = Callable[[str], str]


def parse(
    settings: Mapping[str, Any], speller: Speller, *, model: type[TrainOptions] = TrainOptions
):
    """``model`` from ``settings``, every field and rule checked; the first problem is a
    ``ConfigError`` that names the setting as ``speller`` spells it."""
    try:
        options = model.model_validate(dict(settings))
    except ValidationError as exc:
        raise ConfigError(_first_problem(exc, settings, speller)) from None
    try:
        validate_name(options.name)
    except KtlError as exc:  # a bad name in a path is "no such model"; here, a bad option
        raise ConfigError(f"{speller('name')}: {exc.message}") from None
    try:
        check_location(options.store)
    except UnsupportedStore as exc:
        raise ConfigError(f"{speller('store')}: {exc.message}") from None
    for rule in options.rules():
        raise ConfigError(rule.format_map(_Spelled(speller)))
    return options


class _Spelled(dict):
    def __init__(self, speller: Speller):
        super().__init__()
        self.speller = speller

    def __missing__(self, key: str) -> str:
        return self.speller(key)


def _first_problem(exc: ValidationError, settings: Mapping[str, Any], speller: Speller) -> str:
    error = exc.errors()[0]
    key = str(error["loc"][0]) if error["loc"] else ""
    if error["type"] == "missing":
        missing = [n for n in ("data", "name") if n not in settings] or [key]
        return f"missing {' and '.join(speller(n) for n in missing)}"
    if error["type"] == "extra_forbidden":
        hint = did_you_mean(key, TrainOptions.model_fields)
        return f"unknown setting {speller(key)}{hint}"
    value, name = settings[key], speller(key)
    shown = f"{name} {value}" if name.startswith("--") else f"{name} = {value!r}"
    return f"{shown}: {_expected(key, value)}"


def _expected(key: str, value: Any) -> str:
    """What field ``key`` takes, for a ``value`` it refused."""
    field = TrainOptions.model_fields[key]
    annotation = field.annotation
    kinds, choices, bounds = describe(
        Annotated[annotation, *field.metadata] if field.metadata else annotation
    )
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    if choices and not kinds and isinstance(value, str):
        return f"must be one of {', '.join(choices)}{did_you_mean(value, choices)}"
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if bounds and numeric and ({"int", "float"} & set(kinds)):
        return f"must be {bounds}"
    if choices:
        kinds.append(" or ".join(choices))
    return f"expected {' or '.join(_KIND_WORDS.get(kind, kind) for kind in kinds)}"


# Python's type names, as a user who never read Python says them.
_KIND_WORDS = {"float": "a number", "int": "a whole number", "bool": "true or false", "str": "text"}


def describe(annotation: Any) -> tuple[list[str], list[str], str]:
    """The kinds, literal choices and bounds (in words) of a field's annotation."""
    kinds: list[str] = []
    choices: list[str] = []
    bounds = ""
    parts = [annotation]
    while parts:
        part = parts.pop(0)
        if get_origin(part) is Annotated:
            base, *metadata = get_args(part)
            bounds = _bounds_words(metadata) or bounds
            parts.insert(0, base)
        elif get_origin(part) is Literal:
            choices += [str(choice) for choice in get_args(part)]
        elif get_args(part):
            parts[:0] = list(get_args(part))
        elif part is not type(None):
            kinds.append(part.__name__)
    return kinds, choices, bounds


def _bounds_words(metadata: list[Any]) -> str:
    low = high = None
    words = {}
    for info in metadata:
        for item in getattr(info, "metadata", [info]):
            for cls, word, attr in (
                (annotated_types.Ge, "from", "ge"),
                (annotated_types.Gt, "more than", "gt"),
                (annotated_types.Le, "to", "le"),
                (annotated_types.Lt, "less than", "lt"),
            ):
                if isinstance(item, cls):
                    number = getattr(item, attr)
                    if attr in ("ge", "gt"):
                        low, words["low"] = number, word
                    else:
                        high, words["high"] = number, word
    if low is None or high is None:
        return ""
    closed = words["low"] == "from" and words["high"] == "to"
    high_word = "to" if closed else ("at most" if words["high"] == "to" else "less than")
    low_word = words["low"] if closed or words["low"] == "more than" else "at least"
    return f"{low_word} {low:,} {'' if closed else 'and '}{high_word} {high:,}"
