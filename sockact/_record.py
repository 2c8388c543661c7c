"""Frozen records — what the hand-over machine's events, effects and outcomes are — without dataclasses.

A successor imports the hand-over machine on its way to READY=1, inside the reload window of a busy
server. There the ``dataclasses`` module (with ``inspect``) and one generated class per record cost
~28 ms of CPU for sockact's 28 records: a quarter of a small app's start. A :class:`Record`
subclass lists its fields as annotations, defaults (immutable ones) as class attributes, and gets
what a frozen dataclass would: ``__init__`` (positional or keyword), ``__eq__`` and ``__hash__``
over the fields and the type, ``__repr__``, ``__match_args__``, ``__replace__`` (``copy.replace``
on 3.13), and no attribute assignment. Type checkers see a frozen dataclass (PEP 681's
``dataclass_transform``). Not a dataclass for ``dataclasses.fields()``/``replace()`` or
``inspect.signature()``. A module defining records must use ``from __future__ import annotations``:
the fields are read from ``__annotations__`` as strings, never evaluated.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs what this module saves
if TYPE_CHECKING:
    from typing import ClassVar

    from typing_extensions import dataclass_transform
else:

    def dataclass_transform(**_: object) -> object:
        return lambda cls: cls


__all__ = ["Record"]


@dataclass_transform(frozen_default=True)
class Record:
    """Base of a frozen record; see the module docstring. Fields without a default come first."""

    __slots__ = ()
    if TYPE_CHECKING:  # annotated for type checkers only: get_type_hints() must not meet ClassVar
        _fields: ClassVar[tuple[str, ...]]
        _defaults: ClassVar[dict[str, object]]
    _fields = ()
    _defaults = {}  # noqa: RUF012 (a ClassVar, declared above; each subclass gets a new one)

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        annotated = list(cls.__annotations__)  # its own (3.10+), as strings
        own = [name for name in annotated if name not in cls._fields]
        defaults = {**cls._defaults, **{name: cls.__dict__[name] for name in annotated if name in cls.__dict__}}
        for name in annotated:
            if isinstance(defaults.get(name), (list, dict, set, bytearray)):
                raise TypeError(f"{cls.__name__}: field {name!r} has a mutable default; every instance would share it")
        fields = (*cls._fields, *own)
        for before, after in zip(fields, fields[1:]):
            if before in defaults and after not in defaults:
                raise TypeError(f"{cls.__name__}: field {after!r} without a default follows {before!r}, which has one")
        cls._fields, cls._defaults = fields, defaults
        setattr(cls, "__match_args__", fields)  # noqa: B010 (mypy sees dataclass_transform's own)

    def __init__(self, *args: object, **kwargs: object) -> None:
        fields = self._fields
        name = type(self).__name__
        if len(args) > len(fields):
            raise TypeError(f"{name}() takes {len(fields)} arguments, {len(args)} given")
        values = dict(zip(fields, args))
        for key, value in kwargs.items():
            if key not in fields:
                raise TypeError(f"{name}() got an unexpected keyword argument {key!r}")
            if key in values:
                raise TypeError(f"{name}() got multiple values for argument {key!r}")
            values[key] = value
        for field in fields:
            if field in values:
                object.__setattr__(self, field, values[field])
            elif field not in self._defaults:
                raise TypeError(f"{name}() missing required argument {field!r}")

    def __replace__(self, **changes: object) -> Record:
        """A copy with ``changes`` (``copy.replace()`` on 3.13+)."""
        return type(self)(**{**dict(zip(self._fields, self._values())), **changes})

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, field) for field in self._fields)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        shown = ", ".join(f"{field}={getattr(self, field)!r}" for field in self._fields)
        return f"{type(self).__name__}({shown})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: {type(self).__name__} is frozen")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: {type(self).__name__} is frozen")
