"""How this package changes moto: one attribute at a time, remembering what it replaced."""

from __future__ import annotations

import threading
from typing import Any

MOTO_VERSION = "5.2.5"

#: moto's attributes as they were before each patch, by patch name then attribute name (tests use
#: them to tell when a fix is no longer needed)
originals: dict[str, dict[str, Any]] = {}
_owners: dict[tuple[str, str], Any] = {}


def check_version() -> None:
    """Every patch reaches into moto's internals, so moto is pinned: refuse any other version."""
    import moto

    if moto.__version__ != MOTO_VERSION:
        raise RuntimeError(f"local mode patches moto {MOTO_VERSION} internals but moto {moto.__version__} is installed")


def installed(patch: str) -> bool:
    return patch in originals


def replace(patch: str, owner: Any, attribute: str, new: Any) -> Any:
    """Set ``owner.attribute`` to ``new`` for ``patch`` (once: a second call changes nothing) and
    return what it replaced. A patch changes each attribute name once: one patch per class."""
    saved = originals.setdefault(patch, {})
    if _owners.setdefault((patch, attribute), owner) is not owner:
        raise ValueError(f"patch {patch!r} already replaced {attribute!r} of another class")
    if attribute not in saved:
        saved[attribute] = vars(owner).get(attribute, getattr(owner, attribute, None))
        setattr(owner, attribute, new)
    return saved[attribute]


def original(patch: str, attribute: str) -> Any:
    """What ``patch`` replaced (as stored in the class: a classmethod or staticmethod object stays one)."""
    return originals[patch][attribute]


def moto_function(patch: str, attribute: str) -> Any:
    """What ``patch`` replaced, as a plain function (a classmethod's or staticmethod's own)."""
    replaced = original(patch, attribute)
    return getattr(replaced, "__func__", replaced)


_state_lock = threading.RLock()  # (re-entrant: callers hold it around backend_state)


def backend_state(backend: Any, name: str) -> dict[str, Any]:
    """A dict kept on a moto backend (so it goes when moto resets its backends); take
    ``state_lock`` around reading and writing it."""
    with _state_lock:
        state = getattr(backend, name, None)
        if state is None:
            state = {}
            setattr(backend, name, state)
        return state


def state_lock() -> Any:
    return _state_lock


def unpatched(patch: str, owner: Any, attribute: str) -> Any:
    """moto's own ``owner.attribute``, whether or not ``patch`` replaced it (as stored in the
    class; tests put it back to tell when a fix is no longer needed)."""
    saved = originals.get(patch, {})
    return saved[attribute] if attribute in saved else vars(owner).get(attribute, getattr(owner, attribute, None))
