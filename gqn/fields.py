"""The fields of a config, checked in one place: every value of `GQNConfig` and `TrainConfig`,
whether it came from a flag, a JSON file or a checkpoint, and the numbers the verbs take.

    @dataclass
    class Config:
        batch_size: int = field(default=36, metadata={"min": 1})

        def __post_init__(self):
            check_fields(self)

    from_dict(Config, {"batch_size": "8"}, "run.json")    # GQNError: run.json: batch_size must
                                                           # be an integer, got '8'
    check("--samples", -1, "int", min=0)                   # GQNError: --samples must be at least 0, got -1

A field's kind is its annotation: int, float, bool or str, each optionally `| None`. An int is
no bool and no float (JSON's 2.5 or "8" is an error, not a guess); a float takes an int and must
be finite; a bool is true or false, never a string such as "no". Its range is in its metadata:
"min" and "max" (inclusive), "above" and "below" (exclusive), "multiple_of", "odd", "choices" and
"pattern" (a regular expression the whole string matches, and what it allows in words).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import fields

from gqn.errors import GQNError

KINDS = {"int": "an integer", "float": "a finite number", "bool": "true or false", "str": "a string"}


def check(name: str, value, kind: str, optional: bool = False, **limits) -> None:
    """Raise a GQNError naming `name` unless `value` is of `kind` and within `limits`."""
    if value is None and optional:
        return
    if not _is_kind(value, kind):
        raise GQNError(f"{name} must be {KINDS[kind]}, got {value!r}")
    problem = _out_of_range(value, limits)
    if problem:
        raise GQNError(f"{name} must be {problem}, got {value!r}")


def check_fields(obj, label: Callable[[str], str] = str) -> None:
    """Check every field of a config dataclass; `label` spells a field's name in the message."""
    for f in fields(obj):
        kind = f.type.replace(" | None", "")
        limits = {k: v for k, v in f.metadata.items() if k in RULES}
        check(label(f.name), getattr(obj, f.name), kind, optional=f.type.endswith("| None"), **limits)


def from_dict(cls, d, where: str):
    """A config dataclass from a dict (a JSON object, a checkpoint's entry); an unknown key, or a
    value its field does not allow, is an error that starts with `where`."""
    if not isinstance(d, dict):
        raise GQNError(f"{where}: expected an object of config fields, got {type(d).__name__} {d!r:.60}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise GQNError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    try:
        return cls(**d)
    except GQNError as e:
        raise GQNError(f"{where}: {e}") from None


def _is_kind(value, kind: str) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "bool":
        return isinstance(value, bool)
    return isinstance(value, str)


def _out_of_range(value, limits: dict) -> str | None:
    """What `value` should be, if it is outside `limits`; None if it is within."""
    wanted = [RULES[name][1](x) for name, x in limits.items() if not RULES[name][0](value, x)]
    return " and ".join(wanted) or None


# name: (whether a value keeps the rule, what the rule asks for)
RULES = {
    "min": (operator.ge, "at least {}".format),
    "max": (operator.le, "at most {}".format),
    "above": (operator.gt, "more than {}".format),
    "below": (operator.lt, "less than {}".format),
    "multiple_of": (lambda v, x: v % x == 0, "a multiple of {}".format),
    "odd": (lambda v, x: v % 2 == 1 or not x, lambda x: "odd"),
    "choices": (lambda v, x: v in x, lambda x: "one of " + ", ".join(map(str, x))),
    "pattern": (lambda v, x: re.fullmatch(x[0], v) is not None, lambda x: x[1]),  # (regex, in words)
}
