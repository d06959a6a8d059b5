"""A shallow copy of a plain dataclass with some fields changed, cheaply.

Every compute tick copies each car's state objects before advancing them
(the advance functions are pure), about a hundred copies a tick.
``dataclasses.replace`` builds keyword arguments and runs ``__init__`` for
each: 6 us for ``ChassisState`` on the development VM, against 1.7 us for
copying the instance dict. Only for dataclasses without ``__slots__`` or
``__post_init__`` (no invariant is skipped).
"""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")


def shallow_copy(obj: T, **changes: Any) -> T:
    """``dataclasses.replace(obj, **changes)`` without re-running ``__init__``."""
    new = object.__new__(type(obj))
    state = new.__dict__
    state.update(obj.__dict__)
    state.update(changes)
    return new
