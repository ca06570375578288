"""Why did this call run again? (``miniwdl-fargate cache explain RUN CALL``)

A run's ``call_cache.json`` (beside its report) has, per call, the parts of its key and whether it
was reused (from which run and call) or ran. For a call that ran, the closest earlier entry of
the same task in the call cache (fewest differences, then the newest) is compared with it: one
line per difference (``keys.differences``), and the image's digest when both ran with one known.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from .. import runs, s3io
from . import keys

#: the entries of one task compared at most (the newest)
MAX_ENTRIES = 200


class ExplainError(ValueError):
    """What the user asked about is not there: no such run record, no such call."""


def run_calls(results: str) -> list[dict[str, Any]]:
    """The calls of the run whose results are under ``results`` (its ``call_cache.json``)."""
    rbucket, prefix = s3io.split(results)
    doc = s3io.find_json(rbucket, prefix + runs.CALLS_NAME)
    if not isinstance(doc, dict):
        raise ExplainError(
            f"{results}{runs.CALLS_NAME} is not there: the run has not ended yet, or did not use the call cache"
        )
    return list(doc.get("calls") or [])


def pick(calls: list[dict[str, Any]], asked: str) -> dict[str, Any]:
    """The call ``asked`` names: its directory (or a path under the run), or the start of its
    directory up to a ``-`` (``call-greet-0`` for miniwdl's ``call-greet-0-ann``), else its task's
    name when one call has it; ExplainError listing the calls otherwise."""
    named = [c for c in calls if c.get("call") == asked]  # (exactly: the workflow's call-x among its sub-workflows')
    if not named:
        named = [c for c in calls if asked == os.path.basename(c.get("call", ""))]
    if not named:
        named = [c for c in calls if os.path.basename(c.get("call", "")).startswith(asked + "-")]
    if not named:
        named = [c for c in calls if c.get("call") != "." and asked in (c.get("task"), "call-" + str(c.get("task")))]
    if len(named) == 1:
        return named[0]
    known = ", ".join(". (the workflow)" if c.get("call") == "." else c.get("call", "?") for c in calls)
    if named:
        raise ExplainError(f"{asked!r} names {len(named)} calls: {', '.join(c['call'] for c in named)}; name one")
    if [c.get("call") for c in calls] == ["."] and calls[0].get("outcome") == "reused":
        source = calls[0].get("source") or {}
        raise ExplainError(
            f"no call {asked!r} in this run: the whole workflow was reused from the call cache (run "
            f"{source.get('run', '?')}), so none of its calls ran or was looked up; ask about '.' for more"
        )
    raise ExplainError(f"no call {asked!r} in this run; its calls: {known}")


def explain(bucket: str, results: str, asked: str) -> list[str]:
    """Lines saying whether call ``asked`` of the run (results under ``results``) was reused, and
    if it ran, what differed from the closest earlier entry in the call cache of ``bucket``."""
    call = pick(run_calls(results), asked)
    name = call.get("call", asked)
    if call.get("outcome") == "reused":
        source = call.get("source") or {}
        return [f"{name} was reused from the call cache: its results are run {source.get('run')}'s, call {source.get('call')}"]
    lines = [f"{name} ran (task {call.get('task')})"]
    unusable = call.get("unusable")
    if isinstance(unusable, dict):  # (the entry of its very key: no closest one to look for)
        return lines + [
            f"the call cache held an entry for exactly these inputs (run {unusable.get('run')}, call "
            f"{unusable.get('call')}), but its results could not be fetched: {unusable.get('problem')}",
            "so the call ran, and its entry was written anew with this run's results",
        ]
    if not call.get("read", True):
        lines.append("the call cache was not read for this run (its call_cache option, or the stack's CallCache, was false or write)")
    own_run = results.rstrip("/").rsplit("/", 1)[-1]
    found = closest(bucket, call, own_run)
    if found is None:
        lines.append(f"no earlier entry of task {call.get('task')} in the call cache: it had not run before with the cache on")
        return lines
    entry, diffs, where = found
    lines.append(f"closest earlier entry: run {entry.get('run')}, call {entry.get('call')} ({where})")
    if not diffs and not call.get("read", True):
        lines.append("its key is the same: with the call cache read, the call would have been reused")
    elif not diffs:
        lines.append("its key is the same: that entry was written after this call looked for it (or could not be read then)")
    lines += ["  " + d for d in diffs]
    was, now = entry.get("image_digest"), call.get("image_digest")
    if was and now and was != now:
        lines.append(f"  (not in the key) image {call.get('image') or entry.get('image')}: digest {was} -> {now}")
    return lines


def closest(bucket: str, call: dict[str, Any], own_run: str) -> tuple[dict[str, Any], list[str], str] | None:
    """The earlier entry of the call's task nearest to it (not one its own run wrote, nor one
    written after the call looked the cache up: a later run's cannot explain it), with the
    differences and its s3:// URI; None if the task has none."""
    prefix = f"{runs.CACHE_PREFIX}call/{call.get('task')}/"
    listed = list(s3io.list_keys(bucket, prefix))
    if call.get("looked_up"):  # (before the newest MAX_ENTRIES are taken: later runs' must not crowd them out)
        looked_up = datetime.fromisoformat(call["looked_up"]) + timedelta(seconds=1)  # (written to the second)
        listed = [o for o in listed if o["LastModified"] <= looked_up]
    listed = sorted(listed, key=lambda o: o["LastModified"], reverse=True)[:MAX_ENTRIES]
    best: tuple[int, int, dict[str, Any], list[str], str] | None = None
    for age, obj in enumerate(listed):
        entry = s3io.find_json(bucket, obj["Key"])
        if not isinstance(entry, dict) or entry.get("run") == own_run:
            continue
        if call.get("looked_up") and str(entry.get("written", "")) > call["looked_up"]:
            continue  # (ISO 8601 times of one form: in order as text)
        diffs = keys.differences(call.get("parts") or {}, entry.get("parts") or {})
        rank = (len(diffs), age)
        if best is None or rank < best[:2]:
            best = (*rank, entry, diffs, s3io.uri(bucket, obj["Key"]))
    return None if best is None else best[2:]
