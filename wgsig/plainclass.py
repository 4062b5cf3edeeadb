"""Data classes (frozen or not) without the ``dataclasses`` module, for what wgsigc loads.

wgsigc starts every 30 s on every peer, small boards included.  ``@dataclass`` compiles
source for each method it adds (``__init__``, ``__repr__``, ``__eq__``, ``__hash__``,
``__setattr__``, ``__delattr__``: about six ``exec`` calls per class) and imports ``inspect``
(with ``ast``, ``dis``, ``tokenize``): for the 30-odd classes of a kernel-mode run that was a
third of an idle run in the emulated VM (0.5 s of 1.5 s).  ``dataclass`` here adds the same methods as
plain functions shared by every class: nothing is compiled at import.  Instances are built by
one generic ``__init__``, a little slower than a generated one, which no per-datagram path of
wgsigd uses (its hot classes stay dataclasses).

Supported, as ``dataclasses`` does it: ``frozen``, defaults, ``field(default_factory=...)``,
``__post_init__``, equality by class and fields, a hash for frozen classes (none otherwise),
``replace``.  Type checkers see a dataclass (``typing.dataclass_transform``).
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: an idle wgsigc run loads no typing module (issue 16)
if not TYPE_CHECKING:  # (in this order, linters see typing's names)
    def overload(function: Callable[..., object]) -> Callable[..., object]:
        """typing.overload's part at run time: none (the implementation, defined last, is what stays)."""
        return function

    def dataclass_transform(**_: object) -> Callable[[Callable[..., object]], Callable[..., object]]:
        return overload  # the marking is for type checkers only
else:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform, overload

    _T = TypeVar("_T")

_MISSING: Any = object()
_set = object.__setattr__


class FrozenInstanceError(AttributeError):
    """An assignment to a field of a frozen instance."""


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], Any]) -> Any:
    """A field whose default is made anew for each instance (a list, a dict, a set)."""
    return _Factory(default_factory)


@overload
def dataclass(cls: type[_T], /) -> type[_T]: ...


@overload
def dataclass(*, frozen: bool = False) -> Callable[[type[_T]], type[_T]]: ...


@dataclass_transform(field_specifiers=(field,))
def dataclass(cls: type[_T] | None = None, /, *, frozen: bool = False) -> Any:
    """``@dataclass`` or ``@dataclass(frozen=True)``: a class's annotated attributes become its fields
    (the modules that use it import it under the standard library's name: a drop-in)."""
    if cls is None:
        return lambda inner: _build(inner, frozen)
    return _build(cls, frozen)


def _build(cls: type[_T], frozen: bool) -> type[_T]:
    names: list[str] = list(getattr(cls, "__plain_fields__", ()))
    defaults: dict[str, Any] = dict(getattr(cls, "__plain_defaults__", {}))
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if str(annotation).startswith(("ClassVar", "typing.ClassVar")):
            continue
        if name not in names:
            names.append(name)
        default = cls.__dict__.get(name, _MISSING)
        if isinstance(default, _Factory):
            delattr(cls, name)
        if default is not _MISSING:
            defaults[name] = default
        elif defaults:
            raise TypeError(f"{cls.__name__}: field {name} without a default follows one with a default")
    fields = tuple(names)
    count = len(fields)
    post_init = getattr(cls, "__post_init__", None)
    qualname = cls.__qualname__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) == count and not kwargs:
            for name, value in zip(fields, args, strict=True):
                _set(self, name, value)
        else:
            if len(args) > count:
                raise TypeError(f"{qualname}() takes {count} arguments, {len(args)} were given")
            for name, value in zip(fields, args, strict=False):
                if name in kwargs:
                    raise TypeError(f"{qualname}() got two values for {name!r}")
                _set(self, name, value)
            unknown = set(kwargs) - set(fields)
            if unknown:
                raise TypeError(f"{qualname}() got an unexpected argument {sorted(unknown)[0]!r}")
            for name in fields[len(args):]:
                if name in kwargs:
                    value = kwargs[name]
                else:
                    value = defaults.get(name, _MISSING)
                    if value is _MISSING:
                        raise TypeError(f"{qualname}() missing argument {name!r}")
                    if isinstance(value, _Factory):
                        value = value.make()
                _set(self, name, value)
        if post_init is not None:
            post_init(self)

    def values(self: Any) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in fields)

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return bool(values(self) == values(other))

    def __repr__(self: Any) -> str:
        return f"{qualname}({', '.join(f'{name}={getattr(self, name)!r}' for name in fields)})"

    methods: dict[str, Any] = {"__init__": __init__, "__eq__": __eq__, "__repr__": __repr__,
                               "__plain_fields__": fields, "__plain_defaults__": defaults,
                               "__match_args__": fields}
    if frozen:
        def __setattr__(self: Any, name: str, value: Any) -> None:
            raise FrozenInstanceError(f"cannot assign to field {name!r} of a frozen {qualname}")

        def __delattr__(self: Any, name: str) -> None:
            raise FrozenInstanceError(f"cannot delete field {name!r} of a frozen {qualname}")

        methods.update(__setattr__=__setattr__, __delattr__=__delattr__, __hash__=lambda self: hash(values(self)))
    elif "__hash__" not in cls.__dict__:
        methods["__hash__"] = None  # mutable and compared by value: unhashable, as a dataclass
    for name, method in methods.items():
        if name not in cls.__dict__ or name.startswith("__plain"):
            if callable(method):
                method.__qualname__ = f"{qualname}.{name}"
            setattr(cls, name, method)
    return cls


def replace(obj: _T, **changes: Any) -> _T:
    """A copy with some fields changed (``dataclasses.replace``)."""
    fields = type(obj).__plain_fields__  # type: ignore[attr-defined]
    return type(obj)(**{name: changes.pop(name) if name in changes else getattr(obj, name) for name in fields},
                     **changes)
