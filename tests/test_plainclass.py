"""wgsig/plainclass.py: what the code relies on from ``dataclasses``, compared with the real thing."""

from __future__ import annotations

import dataclasses

import pytest

from wgsig import plainclass


def _pair(frozen: bool) -> tuple[type, type]:
    made = []
    for decorate, make_field in ((plainclass.dataclass, plainclass.field), (dataclasses.dataclass, dataclasses.field)):
        @decorate(frozen=frozen)
        class Point:
            """A point."""

            x: int
            y: int = 2
            tags: list[str] = make_field(default_factory=list)

            @property
            def total(self) -> int:
                return self.x + self.y

        made.append(Point)
    return made[0], made[1]


@pytest.mark.parametrize("frozen", [True, False])
def test_behaves_as_a_dataclass(frozen: bool) -> None:
    ours, theirs = _pair(frozen)
    for cls in (ours, theirs):
        a, b = cls(1), cls(1, 2, [])
        assert a == b and a != cls(1, 3) and a.total == 3 and a.tags == [] and a.tags is not cls(1).tags
        assert cls(x=1, y=5).y == 5 and cls(1, tags=["t"]).tags == ["t"]
        assert a != (1, 2, [])  # compared by class, not as a tuple
        if frozen:
            assert hash(cls(1, 2, ())) == hash(cls(1, 2, ()))
            with pytest.raises(AttributeError):
                a.x = 5  # type: ignore[misc]
        else:
            with pytest.raises(TypeError):
                hash(a)
            a.x = 5
            assert a.x == 5
        for bad_args, bad_kwargs in (((), {}), ((1, 2, [], 4), {}), ((1,), {"x": 1}), ((1,), {"z": 1})):
            with pytest.raises(TypeError):
                cls(*bad_args, **bad_kwargs)
    assert repr(ours(1)).endswith("Point(x=1, y=2, tags=[])") and repr(theirs(1)).endswith("Point(x=1, y=2, tags=[])")
    assert ours.__match_args__ == theirs.__match_args__ == ("x", "y", "tags")


def test_post_init_replace_and_order_of_defaults() -> None:
    @plainclass.dataclass(frozen=True)
    class Checked:
        size: int

        def __post_init__(self) -> None:
            if self.size < 0:
                raise ValueError("negative")

    with pytest.raises(ValueError):
        Checked(-1)
    assert plainclass.replace(Checked(1), size=4) == Checked(4)
    with pytest.raises(ValueError):
        plainclass.replace(Checked(1), size=-4)
    with pytest.raises(TypeError):
        plainclass.replace(Checked(1), other=4)
    with pytest.raises(TypeError, match="without a default follows"):
        @plainclass.dataclass
        class Wrong:
            a: int = 1
            b: int  # type: ignore[misc]
