"""What a settings dataclass says about each field: its description (the
comment beside it) and the values it takes (a range or a list of choices).

The stages' config dataclasses document every setting once, in a comment on
its line (``voxel: float = setting(0.03, above=0)  # m, TSDF voxel size``);
ROS parameter descriptions, the params file and the launch arguments take it
from there, so there is no second list of descriptions to keep in step.
``setting`` gives a field its range or choices, and ``check_value`` is the one
check of a value against them: ``stseg run --config/--set`` and the nodes'
``configure`` both use it, so a value refused in one is refused in the other
with the same words."""

from __future__ import annotations

import dataclasses
import inspect
import io
import math
import textwrap
import tokenize
from functools import cache


class SettingError(ValueError):
    """A value that does not fit its setting (names the setting, the value and
    what is valid)."""


@dataclasses.dataclass(frozen=True)
class Rule:
    """The values a numeric or string setting takes: ``low`` <= value <=
    ``high`` (either end may be open), value > ``above``, or one of ``choices``."""

    low: float | None = None
    high: float | None = None
    above: float | None = None       # exclusive lower bound
    choices: tuple | None = None

    def describe(self) -> str:
        """The rule in words: "in [0, 1]", "> 0", ">= 1", "one of: tf, odometry"."""
        if self.choices is not None:
            return "one of: " + ", ".join(_shown(c) for c in self.choices)
        lower = (f"({_num(self.above)}" if self.above is not None else
                 f"[{_num(self.low)}" if self.low is not None else None)
        if self.high is not None and lower is not None:
            return f"in {lower}, {_num(self.high)}]"
        if self.high is not None:
            return f"<= {_num(self.high)}"
        if self.above is not None:
            return f"> {_num(self.above)}"
        if self.low is not None:
            return f">= {_num(self.low)}"
        return ""

    def admits(self, value) -> bool:
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, float) and math.isnan(value):
            return False
        return ((self.low is None or value >= self.low)
                and (self.high is None or value <= self.high)
                and (self.above is None or value > self.above))


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)


def _shown(choice) -> str:
    return '""' if choice == "" else str(choice)


def setting(default, *, low: float | None = None, high: float | None = None,
            above: float | None = None, choices=None):
    """A dataclass field with ``default`` and the values it takes: ``low`` and
    ``high`` inclusive bounds, ``above`` an exclusive lower bound, or
    ``choices``. Write its comment on the same line as before."""
    if choices is not None:
        choices = tuple(choices)
        if default not in choices:
            raise ValueError(f"default {default!r} is not one of its choices {choices}")
    rule = Rule(low, high, above, choices)
    if choices is None and not rule.admits(default):
        raise ValueError(f"default {default!r} is not {rule.describe()}")
    return dataclasses.field(default=default, metadata={"rule": rule})


def field_rule(f: dataclasses.Field) -> Rule | None:
    """The range or choices of field ``f`` (``setting``), None if it has none."""
    return f.metadata.get("rule")


def coerce(value, like, key: str):
    """``value`` (from YAML, a ``--set`` or launch string, or a ROS parameter)
    as the type of the default ``like``; ``SettingError`` naming ``key`` if it
    is not one."""
    try:
        if isinstance(like, bool):
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            if not isinstance(value, (bool, int)):
                raise ValueError(value)
            return bool(value)
        if isinstance(like, tuple):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(type(like[0])(v) for v in items) if like else tuple(items)
        if isinstance(like, int):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if isinstance(like, float) and isinstance(value, bool):
            raise ValueError(value)
        if value is None:
            raise ValueError(value)
        return type(like)(value)
    except (TypeError, ValueError):
        raise SettingError(f"{key}: {value!r} is not a valid {type(like).__name__}") from None


def check_value(f: dataclasses.Field, value, key: str):
    """``value`` as a value of field ``f`` (its default's type), checked
    against its range or choices; ``SettingError`` naming ``key``, the value
    and what is valid if it does not fit."""
    value = coerce(value, f.default, key)
    rule = field_rule(f)
    if rule is not None and not rule.admits(value):
        raise SettingError(f"{key}: {value!r} is not {rule.describe()}")
    return value


def describe_field(cls, name: str) -> str:
    """The description of field ``name`` of ``cls``: its comment, then its
    range or choices."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    comment = field_comments(cls).get(name, "")
    rule = field_rule(f)
    rule_text = rule.describe() if rule is not None else ""
    return "; ".join(t for t in (comment, rule_text) if t)


@cache
def field_comments(cls) -> dict[str, str]:
    """field name -> the comment beside it, for the fields of class ``cls``
    written ``name: type = default  # comment``. The comment may go on over
    the field's further lines (in brackets) and over comment-only lines right
    below that start in the same column as it; other comment-only lines
    between fields describe groups of them, not one, and are left out."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    current, line_start, depth, brackets = None, True, 0, 0
    last, column = None, -1          # the last field commented, and its comment's column
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.INDENT:
            depth += 1
        elif tok.type == tokenize.DEDENT:
            depth -= 1
        elif tok.type == tokenize.NAME and line_start and depth == 1 and not brackets:
            current, last = tok.string, None
        elif tok.type == tokenize.OP and tok.string in "([{":
            brackets += 1
        elif tok.type == tokenize.OP and tok.string in ")]}":
            brackets -= 1
        elif tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            name = current
            if name is None and line_start and last is not None and tok.start[1] == column:
                name = last              # a comment-only line continuing the field's
            if name is not None:
                out[name] = f"{out[name]} {text}" if name in out else text
                last, column = name, tok.start[1]
            elif line_start:
                last = None              # a group comment: what follows is not continued
        if tok.type == tokenize.NEWLINE or (tok.type == tokenize.NL and not brackets):
            line_start, current = True, None
        elif tok.type not in (tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT, tokenize.NL):
            line_start = False
    return out


@dataclasses.dataclass(frozen=True)
class Section:
    """Fields ``names`` of the dataclass ``cls`` under ``prefix`` (``""`` or
    ``"registration."``): one part of a node's parameters or of a settings
    file; ``note`` is said above it in a generated file."""

    prefix: str
    cls: type
    names: tuple[str, ...]
    note: str = ""

    @property
    def fields(self) -> tuple[dataclasses.Field, ...]:
        by_name = {f.name: f for f in dataclasses.fields(self.cls)}
        return tuple(by_name[n] for n in self.names)


def section(prefix: str, cls, only: tuple[str, ...] | None = None, skip: tuple[str, ...] = (),
            note: str = "") -> Section:
    """The fields of ``cls`` (those in ``only``, in their order, or all but
    ``skip``) under ``prefix``; fields with a tuple default (several numbers
    in one) are not single settings and are left out."""
    fields = [f for f in dataclasses.fields(cls) if not isinstance(f.default, tuple)]
    if only is not None:
        unknown = set(only) - {f.name for f in fields}
        if unknown:
            raise ValueError(f"{cls.__name__} has no setting {', '.join(sorted(unknown))}")
        names = tuple(only)
    else:
        names = tuple(f.name for f in fields if f.name not in skip)
    return Section(prefix, cls, names, note)
