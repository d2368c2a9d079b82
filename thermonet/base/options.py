"""Options declared once: flag, validation, store attribute and ``--resume`` rule in one place.

A run's settings are an attrs class whose fields are declared with :func:`option`::

    @attrs.frozen(kw_only=True)
    class Settings(OptionSet):
        queue_size: int = option(1000, flag="--queue-size", parse=integer(minimum=2),
                                 help="weight samples N in the entropy queue")

From that one declaration come

* the command-line flag (:func:`add_arguments`, :func:`given_options`);
* the validation with its message, which names the flag the user typed
  (:meth:`OptionSet.resolve` calls the field's ``parse``);
* the store attributes (:meth:`OptionSet.store_attrs`; ``store=False`` keeps a field
  out) and the way back (:meth:`OptionSet.from_store_attrs`);
* the ``--resume`` comparison (:meth:`OptionSet.resume_conflicts`): fields declared
  ``resume="match"`` (the default) must equal the store's, ``resume="free"`` ones (the
  device, speed and memory options) may change between sessions.

Defaults that depend on other options (``--log-every`` from ``--steps``) are ``None`` in
the declaration and filled in by the class's :meth:`OptionSet.derive`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from thermonet.errors import InputError

__all__ = [
    "Option",
    "OptionSet",
    "add_arguments",
    "boolean",
    "choice",
    "given_options",
    "integer",
    "number",
    "option",
    "option_of",
    "text",
]

_KEY = "thermonet.option"

#: A parser: ``parse(raw value, label) -> value``, raising InputError that names ``label``.
Parser = Callable[[Any, str], Any]


@attrs.frozen(kw_only=True)
class Option:
    """How one setting is given on the command line, checked, stored and compared on ``--resume``."""

    flag: str | None
    help: str
    parse: Parser
    resume: str = attrs.field(default="match")
    store: bool = True
    aliases: tuple[str, ...] = ()
    metavar: str | None = None
    switch: bool | None = None  #: a flag without a value; it sets the field to this value
    required: bool = False
    compare: Callable[[Any], Any] | None = None  #: the value as compared on --resume (default: itself)

    @resume.validator
    def _resume(self, attribute, value):
        if value not in ("match", "free"):
            raise ValueError(f"resume must be 'match' or 'free', got {value!r}")

    def label(self, name: str) -> str:
        """What messages call the option: its flag, else its Python name."""
        return self.flag or name


def option(default: Any = None, *, flag: str | None, help: str, parse: Parser, resume: str = "match",
           store: bool = True, aliases: Sequence[str] = (), metavar: str | None = None, switch: bool | None = None,
           required: bool = False, compare: Callable[[Any], Any] | None = None) -> Any:
    """An attrs field that is a run option (see the module docstring)."""
    spec = Option(flag=flag, help=help, parse=parse, resume=resume, store=store, aliases=tuple(aliases),
                  metavar=metavar, switch=switch, required=required, compare=compare)
    return attrs.field(default=default, metadata={_KEY: spec}, kw_only=True)


def option_of(field: attrs.Attribute) -> Option | None:
    """The :class:`Option` declared on an attrs field, or ``None``."""
    return field.metadata.get(_KEY)


# ------------------------------------------------------------------------------ parsers
def integer(minimum: int | None = None, maximum: int | None = None) -> Parser:
    """An int (also ``"3"``, ``"1e6"``, ``3.0``), optionally bounded."""

    def parse(value: Any, label: str) -> int:
        if isinstance(value, bool):
            raise InputError(f"{label} must be an integer, got {value!r}")
        if isinstance(value, int):
            out = int(value)
        else:
            try:
                as_float = float(value)
                out = int(as_float)
            except (TypeError, ValueError, OverflowError):
                raise InputError(f"{label} must be an integer, got {value!r}") from None
            if out != as_float:
                raise InputError(f"{label} must be an integer, got {value!r}")
        if minimum is not None and out < minimum:
            raise InputError(f"{label} must be >= {minimum}, got {out}")
        if maximum is not None and out > maximum:
            raise InputError(f"{label} must be <= {maximum:,}, got {out:,}")
        return out

    return parse


def number(*, positive: bool = False, minimum: float | None = None) -> Parser:
    """A finite float (``positive``: > 0; ``minimum``: >= it)."""

    def parse(value: Any, label: str) -> float:
        try:
            out = float(value)
        except (TypeError, ValueError, OverflowError):
            raise InputError(f"{label} must be a number, got {value!r}") from None
        if not math.isfinite(out):
            raise InputError(f"{label} must be a finite number, got {value!r}")
        if positive and out <= 0:
            raise InputError(f"{label} must be a finite number > 0, got {value!r}")
        if minimum is not None and out < minimum:
            raise InputError(f"{label} must be >= {minimum:g}, got {value!r}")
        return out

    return parse


def choice(*choices: str, none: Iterable[str] = ()) -> Parser:
    """One of ``choices``; the spellings in ``none`` (e.g. ``"none"``, ``"off"``) mean ``None``."""
    nothing = set(none)

    def parse(value: Any, label: str) -> str | None:
        if nothing and (value is None or value is False or (isinstance(value, str) and value in nothing)):
            return None
        if str(value) not in choices:
            allowed = ", ".join([*choices, *sorted(nothing)[:1]])
            raise InputError(f"{label} must be one of {allowed}, got {value!r}")
        return str(value)

    return parse


def text(value: Any, label: str) -> str:
    """Any string."""
    return str(value)


def boolean(value: Any, label: str) -> bool:
    """``True``/``False`` (also the strings ``true``/``false``, ``1``/``0``, as JSON and flags give them)."""
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise InputError(f"{label} must be true or false, got {value!r}")


def optional(parse: Parser) -> Parser:
    """``parse``, letting ``None`` through."""

    def wrapped(value: Any, label: str) -> Any:
        return None if value is None else parse(value, label)

    return wrapped


# ------------------------------------------------------------------------------ the set
class OptionSet:
    """Base of attrs settings classes whose fields are declared with :func:`option`."""

    __slots__ = ()

    @classmethod
    def options(cls) -> dict[str, Option]:
        """Field name -> :class:`Option`, in declaration order."""
        return {f.name: spec for f in attrs.fields(cls) if (spec := option_of(f)) is not None}

    @classmethod
    def resolve(cls, **given: Any):
        """Parse the given values (``None`` = not given), fill defaults, :meth:`derive`; :class:`InputError`."""
        fields = {f.name: f for f in attrs.fields(cls)}
        unknown = [k for k in given if k not in fields]
        if unknown:
            raise InputError(f"unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(fields)}")
        values: dict[str, Any] = {}
        for name, field in fields.items():
            spec = option_of(field)
            raw = given.get(name)
            if raw is None:
                if spec is not None and spec.required:
                    raise InputError(f"{spec.label(name)} is required")
                continue
            values[name] = spec.parse(raw, spec.label(name)) if spec is not None else raw
        try:
            instance = cls(**values)
        except TypeError as exc:  # a mandatory field without an option declaration
            raise InputError(f"{cls.__name__}: {exc}") from None
        return instance.derive()

    def derive(self):
        """Fill the defaults that depend on other settings and check combinations; returns the settings."""
        return self

    # ------------------------------------------------------------------ store and resume
    def store_attrs(self) -> dict[str, Any]:
        """The options a store records (JSON-safe: tuples become lists)."""
        out = {}
        for name, spec in self.options().items():
            if spec.store:
                out[name] = _jsonable(getattr(self, name))
        return out

    @classmethod
    def from_store_attrs(cls, store_attrs: Mapping[str, Any]) -> dict[str, Any]:
        """The stored options as keyword arguments of :meth:`resolve` (absent ones left out)."""
        return {name: store_attrs[name] for name, spec in cls.options().items()
                if spec.store and name in store_attrs}

    def comparable(self) -> dict[str, Any]:
        """The values that must match on ``--resume`` (``resume="match"``)."""
        out = {}
        for name, spec in self.options().items():
            if spec.resume == "match":
                value = _jsonable(getattr(self, name))
                out[name] = spec.compare(value) if spec.compare is not None and value is not None else value
        return out

    def resume_conflicts(self, stored: "OptionSet") -> list[tuple[str, Any, Any]]:
        """``(label, stored value, this value)`` for every ``resume="match"`` option that differs."""
        ours, theirs = self.comparable(), stored.comparable()
        options = self.options()
        return [(options[name].label(name) if name in options else name, theirs.get(name), ours[name])
                for name in ours if ours[name] != theirs.get(name)]


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


# ------------------------------------------------------------------------------ argparse
def add_arguments(parser: argparse.ArgumentParser, cls: type[OptionSet], skip: Iterable[str] = ()) -> None:
    """One argparse argument per declared option with a flag (``default=None``: "not given")."""
    skipped = set(skip)
    for field in attrs.fields(cls):
        spec = option_of(field)
        if spec is None or spec.flag is None or field.name in skipped:
            continue
        help_text = spec.help
        default = field.default
        if spec.switch is None and default is not None and default is not attrs.NOTHING and "default" not in help_text:
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            help_text += f" (default {shown})"
        if spec.switch is not None:
            parser.add_argument(spec.flag, *spec.aliases, dest=field.name, action="store_true", default=None,
                                help=help_text)
        else:
            parser.add_argument(spec.flag, *spec.aliases, dest=field.name, default=None, metavar=spec.metavar,
                                help=help_text)


def given_options(args: argparse.Namespace, cls: type[OptionSet]) -> dict[str, Any]:
    """The options the user gave on the command line (switches mapped to their value)."""
    out = {}
    for name, spec in cls.options().items():
        value = getattr(args, name, None)
        if value is None:
            continue
        out[name] = spec.switch if spec.switch is not None else value
    return out
