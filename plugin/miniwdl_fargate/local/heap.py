"""Python's cyclic garbage collector in local mode's long-lived processes: off while a process
loads what it keeps for its whole life, then told to leave those objects alone.

A local stack's process, and each fork server's, spends its first seconds importing libraries
(moto, boto3, botocore's models, miniwdl, its WDL parsers) and deploying: hundreds of thousands of
objects that live as long as the process does. Meanwhile the collector ran again and again over
all of them, finding next to nothing (measured: 0.5 s of the driver fork server's 2.3 s of
preload, about 1 s of a stack's 4.4 s of start), and after that every full
collection went over them again: in a forked driver, each ran over everything its fork server had
loaded (0.27 s in a 50-task scatter's driver). Python's own recipe for a process that loads and
then forks (https://docs.python.org/3/library/gc.html#gc.freeze): disable the collector early,
``gc.freeze()`` before forking (the frozen objects are in a permanent generation no collection
looks at, so no collection in a child writes to their headers in the pages it shares with its
parent; their reference counts still do); the children then collect their own objects only.

What becomes cyclic garbage while the collector is off stays until the process ends, as do the
frozen objects that later become garbage in a cycle: a bounded amount, once per load, not one
that grows with the runs (measured: about 7,000 objects of a stack's start, 20,000 of the driver
fork server's preload, 47,000 of the Lambda fork server's, against 220,000-300,000 kept; a full
collection before freezing would free them for 0.25-0.45 s of CPU each, most of what is saved).
A process's first load is made before anything else (``local up``, ``local run`` and each fork
server load once); one that loads again (a test process starting a second stack) collects first,
so that what the earlier load's work left as garbage is not frozen with the rest.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def load_then_freeze() -> Iterator[None]:
    """The collector off while the ``with`` block loads a process's long-lived objects; then
    every object there is frozen (``gc.freeze``) and the collector on again, if it was on. If
    something was frozen before, a full collection first."""
    if gc.get_freeze_count():  # (loaded before: the garbage since then is not to be kept)
        gc.collect()
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_on:
            gc.enable()
