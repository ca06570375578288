"""Driver slots: at most N runs of a stack have a driver at once (``launch.driver_slots`` says N).

Each driver holds its vCPUs for its whole run, and drivers holding the account's Fargate vCPU
quota leave their tasks none: every run then waits for the others for good. So a run takes a
slot before its driver is launched, and gives it back at its end.

A slot is an object of the runs bucket, ``drivers/slot-<k>.json``, naming the run that holds it.
A launch takes the first free one, written only where there is none (If-None-Match), or one whose
run has ended, taken over by a write conditional on the ETag it read (If-Match): two launches at
the same moment never both take the last slot, where counting the running drivers let both start
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html). The run's status
says which slot it holds (``driver_slot``), so a retried launch takes no second one. Its finalize
step gives it back by a delete conditional on the ETag it read, so never a slot another run took
over meanwhile (https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-deletes.html);
a slot whose run ended without that (its execution stopped from outside, a finalize that failed:
``ended``) is taken over by the next launch that finds every slot held. Runs waiting for a slot
try again up to every minute (the state machine's TakeDriverSlot): no order among them.
"""

from __future__ import annotations

import datetime
import json
import logging
import random
from dataclasses import dataclass

from .. import aws, runs, s3io, status

log = logging.getLogger(__name__)

PREFIX = "drivers/"


def slot_key(k: int) -> str:
    return f"{PREFIX}slot-{k}.json"


#: a slot is judged by its run's tasks only once it is this old: ECS may not list a task just
#: started (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_DescribeTasks.html), and
#: a launch that took a slot tries RunTask for a few minutes at most
JUDGED_AFTER_SECONDS = 600.0


@dataclass(frozen=True)
class Held:
    run_id: str | None
    taken_at: str
    etag: str


def _held(bucket: str, key: str) -> Held | None:
    """Who holds the slot, since when, and the object's ETag; None if the slot is free."""
    claim = s3io.read_claim(bucket, key)
    return None if claim is None else _holder(claim)


def _holder(claim: s3io.Claim) -> Held:
    """A slot's holder. An object that is not a slot this writes names no run: it is taken over."""
    holder = claim.doc.get("run_id")
    return Held(holder if isinstance(holder, str) else None, str(claim.doc.get("taken_at") or ""), claim.etag)


def ended(bucket: str, cluster: str, held: Held, now: datetime.datetime | None = None) -> bool:
    """Whether the run holding a slot has ended: its status says so or is gone; or, once both the
    slot and its status are JUDGED_AFTER_SECONDS old, ECS runs no task of it (an execution stopped
    from outside runs no finalize, and its driver stops itself). A launching run writes its status
    at each launch and a running one every few seconds: a run between two launches (a driver that
    failed to start, launched again) keeps its slot. A run whose status or tasks cannot be read is
    taken as going (its slot kept)."""
    if not held.run_id:
        return True
    try:
        current = status.read(bucket, held.run_id)
        if current is None or current.finished:
            return True
        now = now or datetime.datetime.now(datetime.timezone.utc)
        try:
            ages = [(now - datetime.datetime.fromisoformat(t)).total_seconds() for t in (held.taken_at, current.updated_at)]
        except ValueError:
            return True
        if min(ages) < JUDGED_AFTER_SECONDS:
            return False
        # (the run's driver and WDL tasks, desired RUNNING: ListTasks' default; startedBy alone)
        listed = aws.client("ecs").list_tasks(cluster=cluster, startedBy=runs.started_by(held.run_id))
        return not listed.get("taskArns")
    except Exception as exn:  # noqa: BLE001 (see above)
        log.warning("driver slot of run %s: could not tell whether the run has ended (%s); kept", held.run_id, exn)
        return False


#: a launch finding every slot held looks at this many of them (at random) for one whose run has
#: ended: each costs S3 and ECS requests, and queued runs look every minute
LOOKED_AT = 20


def take(bucket: str, cluster: str, run_id: str, slots: int) -> str | None:
    """The key of a slot for the run: one it holds already (a retried launch), a free one, or one
    a run that has ended held; None while runs still going hold all ``slots``. One listing of the
    slots tells the free from the held (S3 lists what was written before it, strongly consistent:
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/Welcome.html#ConsistencyModel); a free
    one is still taken only by a write where there is none."""
    current = status.read(bucket, run_id)
    if current is not None and current.driver_slot:
        held = _held(bucket, current.driver_slot)
        if held is not None and held.run_id == run_id:
            return current.driver_slot
    body = json.dumps({"run_id": run_id, "taken_at": runs.now_iso()}).encode()
    listed = {o["Key"] for o in s3io.list_keys(bucket, PREFIX)}
    free = [k for k in range(slots) if slot_key(k) not in listed]
    held_keys = [k for k in range(slots) if slot_key(k) in listed]
    random.shuffle(free)  # (launches at the same moment mostly write different slots)

    def let_go(claim: s3io.Claim) -> bool:  # (by this run itself: taken again, anew)
        held = _holder(claim)
        return held.run_id == run_id or ended(bucket, cluster, held)

    # every free slot, then (every slot held: by runs still going?) some of the held ones
    for k in free + random.sample(held_keys, min(LOOKED_AT, len(held_keys))):
        taking = s3io.take_claim(bucket, slot_key(k), body, let_go, held_first=slot_key(k) in listed)
        if taking.etag is None:
            continue  # held by a run still going, or another launch took it first
        previous = _holder(taking.held).run_id if taking.held is not None else run_id
        if previous != run_id:
            log.info("run %s took over driver slot %s from %s", run_id, slot_key(k),
                     f"run {previous}, which has ended" if previous else "an object that is not a driver slot")
        return slot_key(k)
    return None


def give_back(bucket: str, run_id: str, key: str | None) -> bool:
    """Free the slot the run holds (its status's ``driver_slot``), unless another run took it over
    meanwhile; True if this freed it. Never raises: the next launch takes an ended run's slot over."""
    if not key:
        return False
    try:
        held = _held(bucket, key)
        return held is not None and held.run_id == run_id and s3io.remove_claim(bucket, key, held.etag)
    except Exception as exn:  # noqa: BLE001 (see above)
        log.warning("run %s: could not give back its driver slot %s (%s); the next launch takes it over", run_id, key, exn)
        return False
