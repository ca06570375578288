"""A run's own copy of what it was submitted with: the only thing its driver reads.

The submit step copies the workflow bundle (the main WDL's folder: its imports, miniwdl.cfg, files
read by relative path) into ``<results>/source/`` and writes the inputs it read into
``<results>/inputs.json``; it then validates that copy, and the run record names it. So a run
runs exactly what was checked, whatever is uploaded to the same keys afterwards, even within the
same second.

Why a copy, not version ids: pinning by version would take a version id per bundle object
(``ListObjectVersions`` grows with every upload of the folder, HeadObject per object otherwise),
only works in versioned buckets (an API run's workflow may live in any readable bucket), and a
lifecycle rule expiring noncurrent versions would break a long or resumed run. A server-side
``CopyObject`` moves no data through the function, costs one PUT-class request per object, and
leaves the run's source beside its results. The inputs document is read at its exact version
(``GetObject`` with ``VersionId``, the one the S3 event names:
https://docs.aws.amazon.com/AmazonS3/latest/userguide/RetrievingObjectVersions.html and
https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html), or, in a bucket without
versioning, with ``IfMatch`` on the event's ETag, which fails rather than read a later upload.
Each bundle object is copied with ``CopySourceIfMatch`` on the ETag its listing showed, so an
object replaced while the copy runs fails the copy instead of mixing two uploads
(https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html).
"""

from __future__ import annotations

import io
import re
import tempfile
from dataclasses import dataclass
from typing import IO, Any

from .. import aws, runs, s3io, zipbundle

SOURCE_DIR = "source/"
#: as the CLI's own bundle limits: a workflow's folder is its bundle, not a data folder
BUNDLE_MAX_FILES = 200
BUNDLE_MAX_BYTES = 256 * 1024 * 1024
COPY_ATTEMPTS = 3


class SnapshotError(ValueError):
    """The bundle or inputs cannot be pinned; the message says what and where."""


def folder_of(key: str) -> str:
    """The WDL's folder (``a/b/`` for ``a/b/x.wdl``; empty at the top of a bucket)."""
    return key.rsplit("/", 1)[0] + "/" if "/" in key else ""


#: a run's own copy of its workflow: ``runs/<name>/results/<run id>/source/...``
RUN_SOURCE_RE = re.compile(rf"^({re.escape(runs.RUNS_PREFIX)}[^/]+/{re.escape(runs.RESULTS_DIR)}/[^/]+/{re.escape(SOURCE_DIR)})")


def source_root(key: str) -> str:
    """What the driver downloads as the WDL's bundle: the whole of a run's copy (``source/``:
    a folder submitted, or a bundle unpacked, whose main WDL may be in a subfolder of it and
    import its siblings, as Amazon Genomics CLI's bundles do), else the WDL's folder."""
    found = RUN_SOURCE_RE.match(key)
    return found.group(1) if found else folder_of(key)


FOLDER_RULE = (
    "the workflow's folder is copied whole with each run, so it may not be the bucket's top or "
    f"{runs.RUNS_PREFIX!r}, which hold other runs: put the WDL (and its imports) in a folder of its own"
)


def folder_problem(wdl_uri: str) -> str | None:
    """Why the WDL's folder cannot be its bundle, if it cannot: a prefix that holds other runs."""
    folder = folder_of(s3io.split(wdl_uri)[1])
    if runs.RUNS_PREFIX.startswith(folder):  # "" (the bucket's top) or "runs/"
        return f"{wdl_uri}: {FOLDER_RULE}"
    return None


def bundle_listing(bucket: str, folder: str) -> list[dict[str, Any]]:
    """Every object under ``folder`` but its ``results/`` (where each run of an S3-dropped name
    keeps its outputs and copies: it grows with every run, and is never part of the bundle), one
    level at a time (ListObjectsV2 with a delimiter), so the listing costs what the bundle holds,
    not the name's whole history. Stops early once it found more than BUNDLE_MAX_FILES files of
    the bundle (the caller refuses it): never before, whatever else the folder holds (its
    inputs.json, a refusal, folder markers), or a subfolder went unlisted and its files uncopied."""
    paginator = aws.client("s3").get_paginator("list_objects_v2")
    found: list[dict[str, Any]] = []
    in_bundle = 0
    pending = [folder]
    while pending and in_bundle <= BUNDLE_MAX_FILES:
        prefix = pending.pop()
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            found.extend(page.get("Contents", []))
            in_bundle += sum(1 for obj in page.get("Contents", []) if bundle_file(obj["Key"][len(folder):]))
            pending.extend(
                p["Prefix"] for p in page.get("CommonPrefixes", [])
                if runs.in_bundle(p["Prefix"][len(folder):] + "_")  # (a folder: is it results/?)
            )
    return found


def bundle_file(rel: str) -> bool:
    """Whether a key of the WDL's folder (``rel``: relative to it) is a file of the bundle: not a
    folder marker (``x/``), not the run's own (``runs.in_bundle``)."""
    return bool(rel) and not rel.endswith("/") and runs.in_bundle(rel)


def bundle_objects(bucket: str, wdl_key: str) -> list[dict[str, Any]]:
    """The objects of the WDL's bundle as listed now (Key, ETag, Size): its folder, never a
    prefix holding other runs (``folder_problem``)."""
    problem = folder_problem(s3io.uri(bucket, wdl_key))
    if problem:
        raise SnapshotError(problem)
    folder = folder_of(wdl_key)
    found = [obj for obj in bundle_listing(bucket, folder) if bundle_file(obj["Key"][len(folder):])]
    if len(found) > BUNDLE_MAX_FILES or sum(o["Size"] for o in found) > BUNDLE_MAX_BYTES:
        raise SnapshotError(
            f"s3://{bucket}/{folder} holds more than {BUNDLE_MAX_FILES} files or {BUNDLE_MAX_BYTES >> 20} MiB: "
            "put the WDL (with its imports and the files it reads by relative path) in a folder of its own"
        )
    return found


def check_copy_key(original: str, copy_key: str) -> None:
    """SnapshotError when the run's copy of ``original`` (a file of the bundle: its URI, or its
    name in a zip) would have a key S3 refuses for its length: the copy's key is the original's
    path under the run's ``results/<run id>/source/``, longer than the original's by that much."""
    if (length := s3io.key_bytes(copy_key)) > s3io.MAX_KEY_BYTES:
        raise SnapshotError(
            f"{original}: the run's copy of it (under results/<run id>/{SOURCE_DIR}) would be an S3 object whose key is "
            f"{length} bytes, where S3 allows {s3io.MAX_KEY_BYTES}: shorten the file's path or the run's name"
        )


def copy_bundle(wdl_uri: str, dest_bucket: str, dest_prefix: str) -> str:
    """Copy the WDL's bundle under ``dest_prefix`` (server side); return the URI of the main
    WDL's copy. Retried whole if an object changes during the copy."""
    bucket, wdl_key = s3io.split(wdl_uri)
    folder = folder_of(wdl_key)
    s3 = aws.client("s3")
    for _attempt in range(COPY_ATTEMPTS):
        objects = bundle_objects(bucket, wdl_key)
        for obj in objects:  # (each checked before anything is copied)
            check_copy_key(s3io.uri(bucket, obj["Key"]), dest_prefix + obj["Key"][len(folder):])
        try:
            for obj in objects:
                s3.copy_object(
                    Bucket=dest_bucket, Key=dest_prefix + obj["Key"][len(folder):],
                    # "bucket/key" as it is: x-amz-copy-source must be URL-encoded
                    # (https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html) and
                    # botocore encodes a CopySource string itself (handle_copy_source_param);
                    # encoded here too, a key with a space or an emoji named no object
                    CopySource=f"{bucket}/{obj['Key']}", CopySourceIfMatch=obj["ETag"],
                    # the copy without the original's tags: copying them (COPY, the default) needs
                    # s3:GetObjectTagging and s3:PutObjectTagging, which a file tagged by someone
                    # else (a malware scan) made a submission fail on
                    # (https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html: x-amz-tagging-directive)
                    TaggingDirective="REPLACE",
                )
            return s3io.uri(dest_bucket, dest_prefix + wdl_key[len(folder):])
        except s3.exceptions.ClientError as exn:
            if not s3io.condition_failed(exn):  # (CopySourceIfMatch: an object changed)
                raise
    raise SnapshotError(f"s3://{bucket}/{folder} kept changing while it was being copied; submit again once uploads end")


@dataclass
class BundleCopy:
    """A ``miniwdl zip`` bundle unpacked into a run's ``source/``: its main WDL's copy and the
    bundle's own default inputs (the submitted inputs go over them: ``zipbundle.merge_defaults``)."""

    workflow: str  # s3:// URI of the main WDL's copy
    defaults: dict[str, Any]


#: a bundle read from S3 is held in memory up to this size, then in a temporary file
SPOOL_BYTES = 16 * 1024 * 1024


def read_zip(uri: str) -> IO[bytes]:
    """The bundle at ``uri`` as a seekable file, refused from its size (GetObject's
    ContentLength, known from the response's headers before its body is read:
    https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html) when over
    ``zipbundle.MAX_BYTES``."""
    bucket, key = s3io.split(uri)
    s3 = aws.client("s3")
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as exn:
        code = aws.error_code(exn)
        if code in s3io.NOT_FOUND:
            raise SnapshotError(f"{uri} does not exist") from None
        if code in ("AccessDenied", "403"):
            raise SnapshotError(f"{uri} is not readable by the pipeline (is its bucket in the stack's ReadableS3Arns parameter?)") from None
        raise
    if problem := zipbundle.size_problem(int(obj["ContentLength"]), uri):
        obj["Body"].close()
        raise SnapshotError(problem)
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
    while chunk := obj["Body"].read(1 << 20):
        spool.write(chunk)
    spool.seek(0)
    return spool


def copy_bundle_zip(source: bytes | str, dest_bucket: str, dest_prefix: str, where: str | None = None) -> BundleCopy:
    """Check a ``miniwdl zip`` bundle (its bytes, or the s3:// URI of a ``.zip``) and unpack it
    under ``dest_prefix`` (a run's ``source/``), so the run's copy is a folder as any other's;
    SnapshotError saying what is wrong (``zipbundle``) before anything is written. ``where``
    names the bundle in messages (default: its URI, or "workflow")."""
    where = where or (source if isinstance(source, str) else "workflow")
    if isinstance(source, bytes) and (problem := zipbundle.size_problem(len(source), where)):
        raise SnapshotError(problem)
    data = io.BytesIO(source) if isinstance(source, bytes) else read_zip(source)
    s3 = aws.client("s3")
    try:
        with data, zipbundle.opened(data, where) as bundle:
            for info in bundle.files():  # (each checked before anything is written)
                check_copy_key(f"{where}: {info.filename}", dest_prefix + info.filename)
            for info in bundle.files():
                with bundle.open(info) as member:
                    # one PutObject per member, its body read from the archive as it is sent (a
                    # member is seekable: botocore takes its length and checksum, then rewinds),
                    # so neither memory nor /tmp holds a second copy of the bundle
                    s3.put_object(Bucket=dest_bucket, Key=dest_prefix + info.filename, Body=member)
            return BundleCopy(s3io.uri(dest_bucket, dest_prefix + bundle.main), bundle.defaults)
    except zipbundle.BundleError as exn:
        delete_prefix(dest_bucket, dest_prefix)  # (a member found damaged part way)
        raise SnapshotError(str(exn)) from None


def unmap(text: str, copy_uri: str, original_uri: str) -> str:
    """A message about the copy, as about the original (users know their own keys)."""
    return text.replace(copy_uri, original_uri)


def read_version(bucket: str, key: str, version: str | None, etag: str | None) -> bytes:
    """The bytes of exactly that upload of ``key``: by version id, else by ETag (IfMatch)."""
    s3 = aws.client("s3")
    try:
        return s3.get_object(Bucket=bucket, Key=key, **s3io.one_upload(version, etag))["Body"].read()
    except s3.exceptions.ClientError as exn:
        code = aws.error_code(exn)
        if s3io.condition_failed(exn):
            raise SnapshotError(
                "was replaced before this upload could be read (the bucket keeps no versions): upload it again"
            ) from None
        if code in ("NoSuchKey", "NoSuchVersion", "404"):
            raise SnapshotError("was deleted before the pipeline could read it: upload it again to start the run") from None
        raise


def delete_prefix(bucket: str, prefix: str) -> None:
    """Remove a snapshot that will never run (a rejected submission)."""
    s3 = aws.client("s3")
    for obj in list(s3io.list_keys(bucket, prefix)):
        s3.delete_object(Bucket=bucket, Key=obj["Key"])
