"""s3:// I/O: miniwdl download plugins and the helpers the driver and handlers share.

miniwdl's built-in URI downloads run as container tasks (an aria2c image); these plugins instead
download in-process with boto3, so they follow the configured endpoint (local mode) and need no
image. Downloads land under ``<working directory>/_s3_downloads``, which for the driver and for
standalone runs is on EFS, where every task container can see them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import tempfile
import threading
import time
from concurrent.futures import CancelledError
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from . import aws

DOWNLOADS = "_s3_downloads"


class S3URIError(ValueError):
    pass


def split(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key). The key is everything after the bucket's slash, as
    written: an S3 URI is not a URL (the AWS CLI's ``s3://`` paths are not percent-encoded), so
    ``#``, ``?`` and ``%`` are the key's own characters (``urlparse`` would cut the key at ``#``
    or ``?``: a file named ``h#1.txt`` was uploaded, then not found)."""
    scheme, sep, rest = uri.partition("://")
    bucket, _, key = rest.partition("/")
    if scheme.lower() != "s3" or not sep or not bucket:
        raise S3URIError(f"not an s3:// URI: {uri!r}")
    return bucket, key.lstrip("/")


#: the longest S3 object key, in bytes of UTF-8 ("The object key name is a sequence of Unicode
#: characters with UTF-8 encoding of up to 1,024 bytes long":
#: https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html); S3 answers a longer one
#: KeyTooLongError
MAX_KEY_BYTES = 1024


def key_bytes(key: str) -> int:
    """The length of ``key`` as S3 counts it: bytes of UTF-8 (a name that is not UTF-8, kept as
    surrogate escapes, counted as its bytes)."""
    return len(key.encode(errors="surrogateescape"))


def uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def list_keys(bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    paginator = aws.client("s3").get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


Progress = Callable[[int], None]  # a boto3 transfer Callback: bytes moved; may raise to stop it
Counted = Callable[[int, int], None]  # (objects done, objects known so far)

#: small objects read at once (``aws.each``; each a request: a list of runs reads one or two per
#: run, hundreds for a name run often, where the API has 29 s to answer)
READ_THREADS = 16


def transfer_concurrency() -> int:
    """Objects moved at once by one Transfers: ``[aws_fargate] transfer_concurrency`` (a cfg file or
    ``MINIWDL__AWS_FARGATE__TRANSFER_CONCURRENCY``). Read when a Transfers is made, not at import: a
    local driver forked from a preloaded process (``local.driver_zygote``) has an environment of its own."""
    from . import config  # (not at import: the Lambda functions' modules import s3io, few use Transfers)

    return int(config.option(config.loader(), "transfer_concurrency"))  # type: ignore[call-overload]


class Transfers:
    """Many objects moved in parallel, bounded: one s3transfer TransferManager (boto3's managed
    transfers, https://docs.aws.amazon.com/boto3/latest/reference/customizations/s3.html:
    ``max_concurrency`` threads make the requests) shared by every transfer of a phase, counted
    for status.json through ``counted``. ``progress`` is called before each object is queued and
    as its bytes move; when it raises (the driver's stop check), queued and running transfers are
    cancelled and ``wait`` raises that exception. A context manager: leaving it with an error
    cancels what is left."""

    def __init__(
        self, progress: Progress | None = None, counted: Counted | None = None, concurrency: int | None = None
    ) -> None:
        from boto3.s3.transfer import TransferConfig, create_transfer_manager

        concurrency = concurrency or transfer_concurrency()
        config = TransferConfig(max_concurrency=concurrency, use_threads=True, preferred_transfer_client="classic")
        client = aws.client("s3")
        self.manager = create_transfer_manager(client, config)
        self.progress, self.counted = progress, counted
        self.done = self.total = 0
        self._lock = threading.Lock()
        # the ETag each download was listed (or headed) with, asked for in its GetObject: s3transfer
        # asks for it in a ranged download only (an object of several parts), and takes no IfMatch
        # of its caller; a small object replaced since would be written under the old ETag's name
        self._etags: dict[tuple[str, str], str] = {}
        self._events, self._pin_id = client.meta.events, f"s3io-transfers-{id(self)}"
        self._events.register("provide-client-params.s3.GetObject", self._pin, unique_id=self._pin_id)

    def _pin(self, params: dict[str, Any], **kwargs: Any) -> None:
        """A GetObject of one of this Transfers' downloads (its bucket and key: another download of
        the same object in this process meanwhile asks for that ETag too) asks for the ETag it was given
        (S3 answers 412 if the object changed: "Return the object only if its entity tag (ETag)
        is the same as the one specified", https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html)."""
        etag = self._etags.get((params.get("Bucket", ""), params.get("Key", "")))
        if etag and "IfMatch" not in params and "VersionId" not in params:
            params["IfMatch"] = etag

    def __enter__(self) -> "Transfers":
        return self

    def __exit__(self, kind: Any, exn: Any, tb: Any) -> None:
        # the manager's own exit: cancels what is in flight on an error, then waits for its
        # threads. (Not manager.shutdown(cancel=True, ...): s3transfer 0.19.3 passes its
        # arguments to _shutdown one place off, and the cancel fails with a TypeError.)
        try:
            self.manager.__exit__(kind, exn, tb)
        finally:  # (whatever the manager's exit raises: no pin outlives its Transfers)
            self._events.unregister("provide-client-params.s3.GetObject", unique_id=self._pin_id)

    def _subscribers(self, known: tuple[int, str] | None = None) -> list[Any]:
        from s3transfer.subscribers import BaseSubscriber

        outer = self

        class Counter(BaseSubscriber):
            def on_queued(self, future: Any, **kwargs: Any) -> None:
                if known is not None:  # size and ETag from the listing: no HeadObject per object
                    future.meta.provide_transfer_size(known[0])
                    future.meta.provide_object_etag(known[1])

            def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
                if outer.progress is not None:
                    outer.progress(bytes_transferred)

            def on_done(self, future: Any, **kwargs: Any) -> None:
                outer._count(done=1)

        return [Counter()]

    def _count(self, done: int = 0, total: int = 0) -> None:
        with self._lock:
            self.done += done
            self.total += total
            now = (self.done, self.total)
        if self.counted is not None:
            self.counted(*now)

    def _queue(self, start: Callable[[], Any]) -> Any:
        if self.progress is not None:
            self.progress(0)  # (told to stop: queue nothing more)
        return start()

    def download(self, items: Iterable[tuple[str, str, str] | tuple[str, str, str, int, str]]) -> list[str]:
        """Download (bucket, key, path[, size, ETag]) items in parallel (each written to a
        temporary name beside ``path``, renamed when whole); the paths, once every one arrived.
        The size and ETag of a listing save the HeadObject s3transfer would otherwise send first,
        and every GetObject asks for that ETag (``_pin``): an object replaced since fails (412)."""
        items = list(items)
        self._count(total=len(items))
        folders: set[str] = set()
        futures = []
        for bucket, key, path, *known in items:
            folder = os.path.dirname(path) or "."
            if folder not in folders:
                os.makedirs(folder, exist_ok=True)
                folders.add(folder)
            subscribers = self._subscribers((known[0], known[1]) if known else None)
            if known:
                self._etags[(bucket, key)] = f'"{str(known[1]).strip(chr(34))}"'
            futures.append(self._queue(lambda b=bucket, k=key, p=path, s=subscribers: self.manager.download(b, k, p, subscribers=s)))
        self.wait(futures)
        return [item[2] for item in items]

    def upload(self, items: Iterable[tuple[str, str, str]]) -> list[str]:
        """Upload (regular file, bucket, key) items in parallel; their s3:// URIs. Anything but a
        regular file (a FIFO that opening would block on) is refused before any is queued."""
        items = list(items)
        for path, _, _ in items:
            if not stat.S_ISREG(os.stat(path).st_mode):
                raise ValueError(f"not a regular file, not uploaded: {path}")
        self._count(total=len(items))
        futures = [
            self._queue(lambda p=path, b=bucket, k=key: self.manager.upload(p, b, k, subscribers=self._subscribers()))
            for path, bucket, key in items
        ]
        self.wait(futures)
        return [uri(bucket, key) for _, bucket, key in items]

    def wait(self, futures: list[Any]) -> None:
        """Wait for every transfer; on the first that failed, or when ``progress`` says stop
        between two (it is asked before each: a small object's bytes may move without a progress
        callback, as they do through an in-process stub), cancel the rest, wait for them to end
        (no half-written file is left behind), and raise its error."""
        for i, future in enumerate(futures):
            try:
                if self.progress is not None:
                    self.progress(0)
                future.result()
            except BaseException:
                for later in futures[i:]:
                    later.cancel()
                for later in futures[i:]:
                    try:
                        later.result()
                    except (CancelledError, Exception):
                        pass
                raise


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


def prefix_targets(
    bucket: str, prefix: str, dest: str, exclude=lambda rel: False, objects: Iterable[dict[str, Any]] | None = None,
) -> list[tuple[str, str, str, int, str]]:
    """(bucket, key, path under ``dest``, size, ETag) of every object under ``prefix`` (listed, or
    ``objects``: a listing in hand, downloaded as it was listed), keeping relative paths; a key
    that would land outside ``dest`` is refused before anything is downloaded."""
    prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    targets = []
    for obj in list_keys(bucket, prefix) if objects is None else objects:
        rel = obj["Key"][len(prefix) :]
        if not rel or rel.endswith("/") or exclude(rel):
            continue
        if problem := path_problem(rel):
            raise S3URIError(f"s3://{bucket}/{obj['Key']}: {problem}")
        target = os.path.normpath(os.path.join(dest, rel))
        if not target.startswith(os.path.normpath(dest) + os.sep):
            raise S3URIError(f"refusing to write outside {dest}: s3://{bucket}/{obj['Key']}")
        targets.append((bucket, obj["Key"], target, obj["Size"], obj["ETag"]))
    return targets


def prefix_folders(bucket: str, prefix: str, dest: str, objects: Iterable[dict[str, Any]] | None = None) -> list[str]:
    """The local folders under ``dest`` that the folder markers under ``prefix`` stand for (the
    empty ``<path>/`` objects the S3 console and the driver make: S3 has no folders), so an empty
    folder of a Directory is there once downloaded, as miniwdl gives it; one that would be
    outside ``dest`` or is no path is left out."""
    prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    found = []
    for obj in list_keys(bucket, prefix) if objects is None else objects:
        rel = obj["Key"][len(prefix) :]
        if not rel.endswith("/") or rel == "/" or path_problem(rel.rstrip("/")):
            continue
        target = os.path.normpath(os.path.join(dest, rel))
        if target.startswith(os.path.normpath(dest) + os.sep):
            found.append(target)
    return found


def path_problem(rel: str) -> str | None:
    """Why the key ``rel`` (below a Directory's prefix) has no file path of its own, or None: S3
    keys are flat strings, where ``a//b``, ``a/./b`` and ``a/../b`` are keys of their own, but a
    path has no empty, ``.`` or ``..`` part (such an object would land on another's path, or
    outside the folder; https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html)."""
    parts = rel.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "its key has an empty, '.' or '..' part (a '//', '/./' or '/../' in it), which no file path can hold: rename it"
    return name_problem(parts)


#: the longest file name EFS (NFSv4.1) takes, in bytes (https://docs.aws.amazon.com/efs/latest/ug/limits.html,
#: "Maximum length of a file name")
MAX_NAME_BYTES = 255


def name_problem(parts: list[str]) -> str | None:
    """Why the parts of a key cannot be file names on EFS (one longer than ``MAX_NAME_BYTES``: S3
    keys may have 1,024 bytes between slashes), or None."""
    long = next((part for part in parts if len(part.encode("utf-8")) > MAX_NAME_BYTES), None)
    if long is not None:
        return (f"its key has a part of {len(long.encode('utf-8'))} bytes ({long[:40]}...), longer than the "
                f"{MAX_NAME_BYTES} bytes a file name may have on EFS: rename it")
    return None


def download_prefix(
    bucket: str, prefix: str, dest: str, exclude=lambda rel: False, progress: Progress | None = None,
    transfers: Transfers | None = None, listed: list[dict[str, Any]] | None = None,
) -> list[str]:
    """Download every object under ``prefix`` into ``dest``, keeping relative paths, in parallel
    (through ``transfers``, or a Transfers of its own); ``listed``: the prefix's listing in hand
    (downloaded as it was listed), else listed now."""
    if listed is None:
        listed = list(list_keys(bucket, prefix if not prefix or prefix.endswith("/") else prefix + "/"))
    targets = prefix_targets(bucket, prefix, dest, exclude, objects=listed)
    for folder in prefix_folders(bucket, prefix, dest, listed):
        os.makedirs(folder, exist_ok=True)
    if transfers is not None:
        return transfers.download(targets)
    with Transfers(progress) as own:
        return own.download(targets)


def _download_dir(uri_: str, version: str) -> str:
    """Where the download of ``uri_`` as it is now (``version``: its ETag, or its listing's) goes,
    under the working directory: an object replaced since an earlier download there (miniwdl run
    on its own, in one folder day after day) is downloaded anew, never taken for the old one."""
    digest = hashlib.sha256(f"{uri_}#{version}".encode()).hexdigest()[:16]
    return os.path.join(os.getcwd(), DOWNLOADS, digest)


def download_file(cfg: Any, logger: logging.Logger, uri: str, **kwargs: Any) -> Iterator[dict]:
    """miniwdl ``file_download`` plugin for s3:// (a generator yielding the outputs directly)."""
    bucket, key = split(uri)
    if not key or key.endswith("/"):
        raise S3URIError(f"File input {uri} names a folder; use a Directory input")
    etag = aws.client("s3").head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    path = os.path.join(_download_dir(uri, etag), os.path.basename(key))
    if not os.path.exists(path):
        download_to(bucket, key, path)
    logger.info("downloaded %s to %s", uri, path)
    yield {"outputs": {"file": path}}


def download_directory(cfg: Any, logger: logging.Logger, uri: str, **kwargs: Any) -> Iterator[dict]:
    """miniwdl ``directory_download`` plugin for s3://bucket/prefix/."""
    bucket, key = split(uri)
    name = os.path.basename(key.rstrip("/")) or bucket
    prefix = key.rstrip("/") + "/" if key.strip("/") else ""
    listed = list(list_keys(bucket, prefix))  # (one listing: the download is named by it, and takes it)
    listing = sorted((o["Key"], o["ETag"].strip('"')) for o in listed)
    path = os.path.join(_download_dir(uri, hashlib.sha256(json.dumps(listing).encode()).hexdigest()), name)
    if not os.path.isdir(path):
        staging = path + ".part"
        got = download_prefix(bucket, prefix, staging, listed=listed)
        if not got:
            raise S3URIError(f"Directory input {uri}: no objects under that prefix")
        os.replace(staging, path)
    logger.info("downloaded %s to %s", uri, path)
    yield {"outputs": {"directory": path}}


#: files smaller than this go up in one PutObject, without a transfer manager (whose threads
#: cost more than such an upload): boto3's own default multipart threshold (TransferConfig
#: ``multipart_threshold``, 8 MiB), up to which its ``upload_file`` makes that one PutObject too
#: ("Multipart transfers occur when the file size exceeds the value of the multipart_threshold
#: attribute", https://docs.aws.amazon.com/boto3/latest/guide/s3.html)
SINGLE_PUT_BYTES = 8 * 1024 * 1024


def upload_file(path: str, bucket: str, key: str, progress: Progress | None = None) -> str:
    """Upload the regular file at ``path`` (anything else, e.g. a FIFO that opening would block
    on, is refused before it is opened: ValueError)."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"not a regular file, not uploaded: {path}")
    if progress is not None:
        progress(0)
    if info.st_size < SINGLE_PUT_BYTES:
        with open(path, "rb") as body:
            aws.client("s3").put_object(Bucket=bucket, Key=key, Body=body)
        if progress is not None and info.st_size:
            progress(info.st_size)
    else:
        aws.client("s3").upload_file(path, bucket, key, Callback=progress)
    return uri(bucket, key)


#: What S3 answers a conditional request whose condition did not hold: 412 PreconditionFailed
#: (``IfNoneMatch="*"``: an object is already there; ``IfMatch`` / ``CopySourceIfMatch``: its ETag
#: differs), or, when a conditional write races another write to the same key, 409
#: ConditionalRequestConflict (https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html,
#: https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html). The bare status codes are
#: botocore's Code for an answer without an error body.
CONFLICT = frozenset({"ConditionalRequestConflict", "409"})  # (another write to the key in progress: try again)
CONDITION_FAILED = frozenset({"PreconditionFailed", "412"}) | CONFLICT


#: the codes S3 answers a missing key with: GetObject's NoSuchKey, HeadObject's bare 404 (a HEAD
#: response has no body to name it; botocore says "404" or "NotFound")
NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})


def not_found(exn: Exception) -> bool:
    """Whether a ClientError is S3 saying the key is not there (``NOT_FOUND``)."""
    return aws.error_code(exn) in NOT_FOUND


def condition_failed(exn: Exception) -> bool:
    """Whether a ClientError is S3 refusing a conditional request (``CONDITION_FAILED``): the
    object is not as the request assumed, or another write to it won."""
    return aws.error_code(exn) in CONDITION_FAILED


#: waits (seconds) before each retry of a conditional write S3 answered 409: another write to the
#: key was in progress ("you should retry the upload": API_PutObject, If-None-Match), which
#: botocore's retry modes do not retry
CONFLICT_RETRY_WAITS = (0.1, 0.3, 1.0, 2.0)


def put_if_absent(bucket: str, key: str, body: bytes, content_type: str | None = None, etag: bool = False) -> Any:
    """Write the object only if there is none (``IfNoneMatch="*"``): True if this call wrote it
    (with ``etag``: the new object's ETag), False if an object was there first (412). A 409 (a
    write to the key racing this one, which may yet fail or be deleted) is tried again, and
    counts as there only if it still answers so."""
    s3 = aws.client("s3")
    extra = {"ContentType": content_type} if content_type else {}
    for wait in (*CONFLICT_RETRY_WAITS, None):
        try:
            put = s3.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*", **extra)
        except s3.exceptions.ClientError as exn:
            if not condition_failed(exn):
                raise
            if wait is None or aws.error_code(exn) not in CONFLICT:
                return False
            time.sleep(wait)
            continue
        return put["ETag"] if etag else True
    return False  # (not reached)


@dataclass(frozen=True)
class Claim:
    """An object written as a claim (a run name's while it is submitted, a driver slot): what its
    JSON says (empty if it is not a JSON object: no claim this product wrote) and its ETag, on
    which taking it over or giving it up is conditional."""

    doc: dict[str, Any]
    etag: str


def read_claim(bucket: str, key: str) -> Claim | None:
    """The claim at ``key``, or None if there is none."""
    s3 = aws.client("s3")
    try:
        got = s3.get_object(Bucket=bucket, Key=key)
        body = got["Body"].read()
    except s3.exceptions.ClientError as exn:
        if not_found(exn):
            return None
        raise
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    return Claim(doc if isinstance(doc, dict) else {}, got["ETag"])


@dataclass(frozen=True)
class Taking:
    """What ``take_claim`` found: ``etag``, the claim's new ETag once this took it (None: not
    taken); ``held``, the claim that was there (taken over, or still holding it; None: none was,
    or it went before it could be read)."""

    etag: str | None
    held: Claim | None


def take_claim(bucket: str, key: str, body: bytes, stale: Callable[[Claim], bool], held_first: bool = False) -> Taking:
    """Write the claim ``body`` at ``key`` where there is none (``put_if_absent``), or over the one
    there if ``stale`` says its holder has let it go (a write conditional on the ETag read, so of
    two takers at once one wins). Not taken while its holder holds it, or when another write won
    the race (``held`` None then: try again). ``held_first``: the claim is likely held (a listing
    showed it): read it first, rather than try a write S3 refuses (a PUT costs a dozen GETs)."""
    held = read_claim(bucket, key) if held_first else None
    if held is None:
        etag = put_if_absent(bucket, key, body, "application/json", etag=True)
        if etag:
            return Taking(str(etag), None)
        held = read_claim(bucket, key)
    if held is None or not stale(held):
        return Taking(None, held)
    etag = replace_claim(bucket, key, body, held.etag)  # (None: another taker won, or its holder gave it up)
    return Taking(etag, held if etag else None)


def replace_claim(bucket: str, key: str, body: bytes, etag: str) -> str | None:
    """Write ``body`` over the claim only if it is still the one with ``etag`` (``IfMatch``): its
    new ETag, or None if another write replaced or removed it first (it is someone else's now)."""
    s3 = aws.client("s3")
    try:
        return str(s3.put_object(Bucket=bucket, Key=key, Body=body, IfMatch=etag, ContentType="application/json")["ETag"])
    except s3.exceptions.ClientError as exn:
        if condition_failed(exn) or not_found(exn):
            return None
        raise


def remove_claim(bucket: str, key: str, etag: str) -> bool:
    """Delete the claim only if it is still the one with ``etag`` (a conditional delete:
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-deletes.html), so never one
    another caller took over meanwhile: True if this removed it."""
    s3 = aws.client("s3")
    try:
        s3.delete_object(Bucket=bucket, Key=key, IfMatch=etag)
    except s3.exceptions.ClientError as exn:
        if condition_failed(exn) or not_found(exn):
            return False
        raise
    return True


def one_upload(version_id: str | None, etag: str | None) -> dict[str, str]:
    """GetObject / HeadObject arguments that read exactly one upload of a key: its version id
    (an unversioned bucket's event names version ``"null"``: none), else ``IfMatch`` on its ETag,
    so a later upload to the key fails the read (412) instead of being read in its place
    (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html). An entity tag is
    quoted (RFC 9110 section 8.8.3); an event's ETag is not."""
    if version_id and version_id != "null":
        return {"VersionId": version_id}
    if etag:
        return {"IfMatch": f'"{etag.strip(chr(34))}"'}
    return {}


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
        if not_found(exn):
            return None
        raise
