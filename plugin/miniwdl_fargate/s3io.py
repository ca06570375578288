"""s3:// I/O: miniwdl download plugins and the helpers the driver and handlers share.

miniwdl's built-in URI downloads run as container tasks (an aria2c image); these plugins instead
download in-process with boto3, so they follow the configured endpoint (local mode) and need no
image. Downloads land under ``<working directory>/_s3_downloads``, which for the driver and for
standalone runs is on EFS, where every task container can see them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import tempfile
from typing import Any, Callable, Iterator
from urllib.parse import urlparse

from . import aws

DOWNLOADS = "_s3_downloads"


class S3URIError(ValueError):
    pass


def split(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise S3URIError(f"not an s3:// URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def list_keys(bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    paginator = aws.client("s3").get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


Progress = Callable[[int], None]  # a boto3 transfer Callback: bytes moved; may raise to stop it


def download_to(bucket: str, key: str, path: str, progress: Progress | None = None) -> str:
    """Download atomically (temp file + rename) to ``path``."""
    if progress is not None:
        progress(0)  # (it may say stop before a byte moves)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".part.")
    os.close(fd)
    try:
        aws.client("s3").download_file(bucket, key, tmp, Callback=progress)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def download_prefix(
    bucket: str, prefix: str, dest: str, exclude=lambda rel: False, progress: Progress | None = None
) -> list[str]:
    """Download every object under ``prefix`` into ``dest``, keeping relative paths."""
    prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    got = []
    for obj in list_keys(bucket, prefix):
        rel = obj["Key"][len(prefix) :]
        if not rel or rel.endswith("/") or exclude(rel):
            continue
        target = os.path.normpath(os.path.join(dest, rel))
        if not target.startswith(os.path.normpath(dest) + os.sep):
            raise S3URIError(f"refusing to write outside {dest}: s3://{bucket}/{obj['Key']}")
        got.append(download_to(bucket, obj["Key"], target, progress))
    return got


def _download_dir(uri_: str) -> str:
    digest = hashlib.sha256(uri_.encode()).hexdigest()[:16]
    return os.path.join(os.getcwd(), DOWNLOADS, digest)


def download_file(cfg: Any, logger: logging.Logger, uri: str, **kwargs: Any) -> Iterator[dict]:
    """miniwdl ``file_download`` plugin for s3:// (a generator yielding the outputs directly)."""
    bucket, key = split(uri)
    if not key or key.endswith("/"):
        raise S3URIError(f"File input {uri} names a folder; use a Directory input")
    path = os.path.join(_download_dir(uri), os.path.basename(key))
    if not os.path.exists(path):
        download_to(bucket, key, path)
    logger.info("downloaded %s to %s", uri, path)
    yield {"outputs": {"file": path}}


def download_directory(cfg: Any, logger: logging.Logger, uri: str, **kwargs: Any) -> Iterator[dict]:
    """miniwdl ``directory_download`` plugin for s3://bucket/prefix/."""
    bucket, key = split(uri)
    name = os.path.basename(key.rstrip("/")) or bucket
    path = os.path.join(_download_dir(uri), name)
    if not os.path.isdir(path):
        staging = path + ".part"
        got = download_prefix(bucket, key, staging)
        if not got:
            raise S3URIError(f"Directory input {uri}: no objects under that prefix")
        os.replace(staging, path)
    logger.info("downloaded %s to %s", uri, path)
    yield {"outputs": {"directory": path}}


def upload_file(path: str, bucket: str, key: str, progress: Progress | None = None) -> str:
    """Upload the regular file at ``path`` (anything else, e.g. a FIFO that opening would block
    on, is refused before it is opened: ValueError)."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise ValueError(f"not a regular file, not uploaded: {path}")
    if progress is not None:
        progress(0)
    aws.client("s3").upload_file(path, bucket, key, Callback=progress)
    return uri(bucket, key)


def put_json(bucket: str, key: str, doc: Any) -> str:
    import json

    aws.client("s3").put_object(
        Bucket=bucket,
        Key=key,
        Body=(json.dumps(doc, indent=2, sort_keys=True) + "\n").encode(),
        ContentType="application/json",
    )
    return uri(bucket, key)


def get_json(bucket: str, key: str) -> Any:
    import json

    return json.loads(aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def find_json(bucket: str, key: str) -> Any | None:
    """The JSON object at the key, or None if there is none (yet)."""
    s3 = aws.client("s3")
    try:
        return get_json(bucket, key)
    except s3.exceptions.NoSuchKey:
        return None
    except s3.exceptions.ClientError as exn:
        if exn.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
            return None
        raise
