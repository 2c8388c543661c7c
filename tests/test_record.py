"""sockact._record.Record: what a frozen dataclass gives, without importing dataclasses."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sockact._record import Record

from helpers import child_env


class Point(Record):
    x: int
    y: int = 0


class Other(Record):
    x: int
    y: int = 0


class Labelled(Point):
    label: str = ""


def test_init_positional_keyword_and_defaults() -> None:
    assert (Point(1).x, Point(1).y, Point(1, 2).y, Point(y=3, x=4).x) == (1, 0, 2, 4)
    assert Labelled(1, 2, "a").label == "a" and Labelled(1).label == ""


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Point(), "Point() missing required argument 'x'"),  # type: ignore[call-arg]
        (lambda: Point(1, 2, 3), "Point() takes 2 arguments, 3 given"),  # type: ignore[call-arg]
        (lambda: Point(1, z=2), "Point() got an unexpected keyword argument 'z'"),  # type: ignore[call-arg]
        (lambda: Point(1, x=2), "Point() got multiple values for argument 'x'"),  # type: ignore[misc]
    ],
)
def test_wrong_arguments_are_type_errors(make: object, message: str) -> None:
    with pytest.raises(TypeError) as caught:
        make()  # type: ignore[operator]
    assert str(caught.value) == message


def test_equality_and_hash_are_by_type_and_fields() -> None:
    assert Point(1, 2) == Point(1, 2) and hash(Point(1, 2)) == hash(Point(1, 2))
    assert Point(1, 2) != Point(1, 3)
    assert Point(1, 2) != Other(1, 2)  # same fields, another type: not equal (a tuple would be)
    assert Point(1) != (1, 0)
    assert len({Point(1), Point(1), Point(2)}) == 2


def test_repr_and_match_args() -> None:
    assert repr(Labelled(1, label="a")) == "Labelled(x=1, y=0, label='a')"
    match Labelled(5, 6, "z"):
        case Labelled(x, y, label):
            assert (x, y, label) == (5, 6, "z")
        case _:
            pytest.fail("no match")


def test_frozen() -> None:
    point = Point(1)
    with pytest.raises(AttributeError, match="Point is frozen"):
        point.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError, match="Point is frozen"):
        del point.x
    assert point.x == 1


def test_a_field_without_default_after_one_with_is_refused() -> None:
    with pytest.raises(TypeError, match="field 'b' without a default follows 'a'"):

        class Bad(Record):
            a: int = 0
            b: int  # type: ignore[misc]


def test_a_subclass_may_give_an_inherited_field_a_default() -> None:
    class Defaulted(Point):
        x: int = 5

    assert (Defaulted().x, Defaulted(1, 2).y) == (5, 2)


def test_a_mutable_default_is_refused() -> None:
    with pytest.raises(TypeError, match="field 'items' has a mutable default"):

        class Shared(Record):
            items: list[int] = []  # noqa: RUF012


def test_replace_and_type_hints() -> None:
    import typing

    assert Labelled(1, label="a").__replace__(y=7) == Labelled(1, 7, "a")
    assert typing.get_type_hints(Labelled) == {"x": int, "y": int, "label": str}  # no ClassVar leaks out


def test_the_hand_over_machine_imports_no_dataclasses() -> None:
    # a successor imports it on its way to READY=1: dataclasses + one generated class per record
    # cost ~28 ms of CPU there
    code = "import sys, sockact._upgrade, sockact.serve; print('dataclasses' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "False", done.stderr
