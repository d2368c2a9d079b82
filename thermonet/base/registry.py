"""Registries by subclassing: ``class FixedLR(Protocol, name="fixed-lr")`` registers itself.

A base class becomes a registry root by subclassing :class:`Registered` with the keyword
``registry``::

    class Protocol(Registered, registry="protocol"):
        ...

and every subclass that is given a name, either in the class statement
(``class X(Protocol, name="x")``) or as a class attribute ``name = "x"`` in its body,
is registered under that name in the root's registry. Subclasses without a name
(abstract intermediates, throw-away test classes) are not registered.

Lookups go through the root: ``Protocol.get("fixed-lr")`` (the class, or
:class:`~thermonet.errors.InputError` naming the choices), ``Protocol.names()`` and
``Protocol.registered()``. Registering a *different* class under a taken name raises
:class:`~thermonet.errors.InputError`; the same class defined again (a module reloaded,
or attrs rebuilding a slotted class, which calls ``__init_subclass__`` a second time)
replaces the entry.
"""

from __future__ import annotations

from typing import Any, ClassVar

from thermonet.errors import InputError

__all__ = ["Registered"]


def _same_definition(a: type, b: type) -> bool:
    return (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


class Registered:
    """Mixin for base classes whose named subclasses register themselves (see the module docstring)."""

    #: The registered name of a concrete subclass ("" for unregistered classes).
    name: ClassVar[str] = ""
    #: What the registry holds, in words ("protocol", "model", ...), for messages.
    registry_kind: ClassVar[str] = "class"
    _registry: ClassVar[dict[str, type]]
    _registry_root: ClassVar[type]

    def __init_subclass__(cls, registry: str | None = None, name: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if registry is not None:
            cls._registry = {}
            cls._registry_root = cls
            cls.registry_kind = registry
            cls.name = ""
            return
        if name is not None:
            cls.name = name
        own = cls.__dict__.get("name")
        if isinstance(own, str) and own and hasattr(cls, "_registry_root"):
            cls._registry_root._register(own, cls)

    @classmethod
    def _register(cls, name: str, subclass: type) -> None:
        old = cls._registry.get(name)
        if old is not None and old is not subclass and not _same_definition(old, subclass):
            raise InputError(f"{cls.registry_kind} name {name!r} is already taken by "
                             f"{old.__module__}.{old.__qualname__}")
        cls._registry[name] = subclass

    @classmethod
    def get(cls, name: str) -> type:
        """The class registered under ``name``; :class:`InputError` naming the choices otherwise."""
        registry = cls._registry_root._registry
        try:
            return registry[str(name)]
        except KeyError:
            raise InputError(f"unknown {cls._registry_root.registry_kind} {name!r}; choose one of "
                             f"{', '.join(registry) or 'none (nothing is registered)'}") from None

    @classmethod
    def names(cls) -> list[str]:
        """Registered names, in registration order."""
        return list(cls._registry_root._registry)

    @classmethod
    def registered(cls) -> dict[str, type]:
        """A copy of the registry: name -> class."""
        return dict(cls._registry_root._registry)
