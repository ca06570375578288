"""moto keeps every model object it ever made: ``BaseModel.__new__`` appends each instance to its
class's ``instances_tracked`` (``moto.core.common_models``; moto's dashboard lists them), which
only ``reset`` empties. For a test that is nothing; a local stack that stays up made a tracked
copy of every running task about five times a second (the DescribeTasks answers' copies,
``ecs_state.snapshot``) and kept every task it ever forgot: its memory grew by about 0.7 MB per
task-minute, without end. Local mode's own copies are made untracked, and what it forgets is
untracked too."""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")


def untracked_copy(model: T) -> T:
    """A shallow copy of a moto model object, as ``copy.copy`` makes it, but not through
    ``BaseModel.__new__``: moto does not keep it (any other object: ``copy.copy``'s)."""
    if not hasattr(type(model), "instances_tracked"):
        return copy.copy(model)
    copied = object.__new__(type(model))
    copied.__dict__.update(model.__dict__)
    return copied


def untrack(models: Iterable[Any]) -> None:
    """Out of their classes' ``instances_tracked``: moto's last reference to model objects its
    backends no longer hold (one pass per class, however many)."""
    gone: dict[type, set[int]] = defaultdict(set)
    for model in models:
        gone[type(model)].add(id(model))
    for cls, ids in gone.items():
        tracked = getattr(cls, "instances_tracked", None)
        if tracked:
            tracked[:] = [model for model in tracked if id(model) not in ids]
