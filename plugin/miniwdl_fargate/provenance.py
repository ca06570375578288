"""What exactly a run ran, for outputs.json and error.json (``"provenance"``): the workflow by
content (the main WDL's and the whole bundle's SHA-256, as the driver fetched them), each WDL task
attempt's image as the task asked for it, as it ran (an image cache's rewrite) and by digest (what
ECS pulled), and the versions of the driver's software.

The bundle's digest is reproducible from a copy of the run's ``source/`` folder: the SHA-256 of
the ``sha256sum`` lines (``<hex>  <relative path>``) of its files, sorted by path (bytewise)::

    find . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
from typing import Any, Iterable

from .attempts import Attempt

log = logging.getLogger("miniwdl-fargate.driver")

#: where the driver keeps the run's inputs beside the bundle it fetched: not part of the bundle
INPUTS_DIR = ".inputs"
CHUNK = 1024 * 1024


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as infile:
        for chunk in iter(lambda: infile.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def bundle_files(bundle_dir: str) -> list[str]:
    """The bundle's files, as paths relative to ``bundle_dir``, sorted bytewise (as ``LC_ALL=C sort``)."""
    found = []
    for root, dirs, files in os.walk(bundle_dir):
        if root == bundle_dir:
            dirs[:] = [d for d in dirs if d != INPUTS_DIR]
        found += [os.path.relpath(os.path.join(root, name), bundle_dir) for name in files]
    return sorted(found, key=os.fsencode)


def workflow_digests(wdl_path: str, bundle_dir: str) -> dict[str, Any]:
    """The main WDL's SHA-256, and the bundle's (the module's docstring says how), with its file count."""
    manifest = "".join(f"{file_sha256(os.path.join(bundle_dir, rel))}  {rel}\n" for rel in bundle_files(bundle_dir))
    return {
        "wdl_sha256": file_sha256(wdl_path),
        "bundle_sha256": hashlib.sha256(manifest.encode()).hexdigest(),
        "bundle_files": manifest.count("\n"),
    }


def task_images(recorded: Iterable[Attempt]) -> list[dict[str, Any]]:
    """Each attempt's image: as asked, as run, and its digest (empty where not known, e.g. an
    attempt that never started)."""
    return [
        {
            "call": a.call_path(),
            "attempt": a.attempt,
            "image": a.image,
            "image_uri": a.image_uri or a.image,
            "image_digest": a.image_digest,
        }
        for a in recorded
    ]


def versions() -> dict[str, str]:
    """The driver's software: this plugin's version and miniwdl's."""
    found = {}
    for key, distribution in (("miniwdl_fargate", "miniwdl-fargate"), ("miniwdl", "miniwdl")):
        try:
            found[key] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            found[key] = "unknown"
    return found


def of_run(workflow_uri: str, digests: dict[str, Any], recorded: Iterable[Attempt]) -> dict[str, Any]:
    """outputs.json's (and error.json's) ``"provenance"``: ``digests`` as ``workflow_digests``
    gave them when the bundle was fetched (empty if the run ended before that). Calls taken from
    the call cache ran in an earlier run and are not listed (that run's outputs.json lists them)."""
    return {
        "workflow": {"uri": workflow_uri, **digests},
        "tasks": task_images(recorded),
        "driver": versions(),
    }
