"""The one boto3 client factory.

Every AWS call of the product (Lambda handlers, driver, backend, local mode) gets its client here,
so retry behaviour, endpoints and how S3 PUTs are sent (``CONTINUE_THRESHOLD``) are configured in
one place. The endpoint follows botocore's own ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>``
variables, which is how local mode points the same code at the embedded moto server.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Iterable
from typing import Any, Callable, TypeVar

import boto3
import botocore.config
import botocore.loaders
import botocore.session
from botocore.exceptions import (
    ChecksumError,
    ClientError,
    CredentialRetrievalError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.retries.standard import RetryContext, ThrottledRetryableChecker, TransientRetryableChecker

# botocore's "standard" retry mode: exponential backoff with jitter on throttling and transient
# errors, with a retry quota. Callers that need more (RunTask capacity failures) add their own.
RETRY_CONFIG = botocore.config.Config(
    retries={"mode": "standard", "max_attempts": 8},
    max_pool_connections=64,
    connect_timeout=10,
    read_timeout=60,
)
#: for a question whose answer is only a help (a quota to say an error by): asked briefly, so a
#: subnet with no route to the service's endpoint costs seconds, not minutes
LOOKUP_CONFIG = botocore.config.Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=3, read_timeout=10)
#: for S3 URLs presigned for someone without credentials: Signature Version 4, at the bucket's
#: Regional host (virtual addressing; the global host answers a bucket of another Region with a
#: redirect). botocore presigns with Signature Version 2 where a Region still has it (us-east-1,
#: eu-west-1, ...: botocore's ``_set_s3_presign_signature_version``), which S3 refuses for buckets
#: created after June 24, 2020 (https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html;
#: https://aws.amazon.com/blogs/aws/amazon-s3-update-sigv2-deprecation-period-extended-modified/)
PRESIGN_CONFIG = RETRY_CONFIG.merge(botocore.config.Config(signature_version="s3v4", s3={"addressing_style": "virtual"}))

# What an error that botocore's retries gave up on says, by botocore's own rules (its "standard"
# retry mode's checkers: https://boto3.amazonaws.com/v1/documentation/api/latest/guide/retries.html#standard-retry-mode),
# so every caller deciding whether to wait and look again decides alike
_THROTTLING = ThrottledRetryableChecker()
_TRANSIENT = TransientRetryableChecker()


class _Status:
    """An HTTP answer's status code, as botocore's checkers read it from a response."""

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


def _retry_context(error: BaseException | dict[str, Any]) -> RetryContext:
    parsed = error.response if isinstance(error, ClientError) else error if isinstance(error, dict) else None
    status = (parsed or {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
    return RetryContext(
        attempt_number=1, parsed_response=parsed, http_response=_Status(status) if status else None,
        caught_exception=error if isinstance(error, Exception) and not isinstance(error, ClientError) else None,
    )


#: the SDK's own errors that pass: no connection (a timeout, a reset, TLS), an answer cut short
#: or garbled on the way (a read timeout, a body shorter than said, a checksum that does not
#: match), temporary credentials not fetched in time (the container's or instance's endpoint).
#: Not the others (no credentials or region, a request its model refuses, an unknown profile or
#: service): no later try mends those
_PASSING_SDK_ERRORS = (
    BotoConnectionError, HTTPClientError, IncompleteReadError, ChecksumError, FlexibleChecksumError, CredentialRetrievalError,
)


def error_code(error: BaseException) -> str:
    """An AWS error's code (a ClientError's ``Error.Code``: "NoSuchKey", "ThrottlingException",
    "412" for an answer without a body), or "" for any other error."""
    response = getattr(error, "response", None) or {}
    return str((response.get("Error") or {}).get("Code") or "")


def throttled(error: BaseException | dict[str, Any]) -> bool:
    """Whether an AWS error (a ClientError, or the parsed response of a failed attempt) says its
    caller went over a request rate: Throttling, ThrottlingException, TooManyRequestsException,
    RequestLimitExceeded, SlowDown, ..., as botocore's standard retry mode counts them, or HTTP 429
    (Too Many Requests) whatever its code."""
    context = _retry_context(error)
    status = context.http_response.status_code if context.http_response is not None else None
    return status == 429 or _THROTTLING.is_retryable(context)


def passing(error: BaseException) -> bool:
    """Whether an AWS error is one that passes, so that a later look may not meet it: throttling;
    a server error (500, 502, 503, 504) or a request timeout, as botocore's standard retry mode
    retries them; and the SDK's own ``_PASSING_SDK_ERRORS``. Not a refusal (another 4xx), nor an
    error of the caller's configuration."""
    if throttled(error) or _TRANSIENT.is_retryable(_retry_context(error)):
        return True
    return isinstance(error, _PASSING_SDK_ERRORS)


#: variables naming a profile or the machine's config and credentials files
#: (https://boto3.amazonaws.com/v1/documentation/api/latest/guide/configuration.html): local mode
#: removes them, so no setting of a real account's profile reaches a local run
SHARED_CONFIG_VARIABLES = ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")


#: credentials for moto (it takes any) as environment variables: never a real account's
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


def local_environment(endpoint: str, region: str) -> dict[str, str]:
    """The environment that points AWS clients at local mode's moto server: its endpoint
    (botocore's ``AWS_ENDPOINT_URL``), fake credentials (moto takes any) and its region."""
    return {"AWS_ENDPOINT_URL": endpoint, **FAKE_CREDENTIALS, "AWS_DEFAULT_REGION": region, "AWS_REGION": region}


_lock = threading.Lock()
_session: boto3.session.Session | None = None
_clients: dict[tuple[str, str | None], Any] = {}
#: the API calls this process made through ``client``'s clients, by ``service.Operation``
#: (``calls``); each call once, whatever its retries
_calls: collections.Counter[str] = collections.Counter()
_calls_lock = threading.Lock()


def _count_call(model: Any, **_: Any) -> None:
    """botocore's ``before-call`` event, once per API call (its attempts come after)."""
    with _calls_lock:
        _calls[f"{model.service_model.service_name}.{model.name}"] += 1


#: an S3 request whose body is smaller than this is sent whole at once, without ``Expect:
#: 100-continue``. botocore asks for the 100 Continue on every PUT whose body it holds as a file,
#: however small (``handlers.add_expect_header``; a ``put_object`` of bytes becomes one), and then
#: sends the body only once S3's interim answer came: one round trip more for each small object
#: the product writes (each status.json, each call-cache entry). AWS's SDKs for Go and Kotlin ask
#: for it only from 2 MB up (https://github.com/aws/aws-sdk-go/pull/615,
#: https://github.com/aws/aws-sdk-go-v2/issues/1451,
#: https://docs.aws.amazon.com/sdk-for-kotlin/api/latest/s3/aws.sdk.kotlin.services.s3/-s3-client/-config/-builder/continue-header-threshold-bytes.html).
#: The header is not signed (botocore's SigV4 leaves ``expect`` out: ``SIGNED_HEADERS_BLACKLIST``),
#: so taking it off before the send keeps the signature. A bigger body, or one whose size the
#: request does not say, keeps it: S3 can still refuse such a request before its body is sent.
CONTINUE_THRESHOLD = 2 * 1024 * 1024


def _send_small_bodies_at_once(request: Any, **_: Any) -> None:
    """botocore's ``before-send`` event for S3, once per attempt: ``Expect: 100-continue`` taken
    off a request whose body is under ``CONTINUE_THRESHOLD``. Its size is its ``Content-Length``,
    or, for a body sent in chunks with its checksum in a trailer (what botocore does over HTTPS
    with a PutObject's or an UploadPart's body when it computes the checksum itself:
    ``Transfer-Encoding: chunked``, no ``Content-Length``), its ``X-Amz-Decoded-Content-Length``
    (https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html)."""
    headers = request.headers
    expect = headers.get("Expect")
    length = headers.get("Content-Length") or headers.get("X-Amz-Decoded-Content-Length")
    if expect is None or length is None:
        return
    if isinstance(expect, bytes):
        expect = expect.decode("latin-1")
    try:
        size = int(length)  # (int() reads bytes and str alike)
    except ValueError:
        return
    if expect.lower() == "100-continue" and size < CONTINUE_THRESHOLD:
        del headers["Expect"]


def calls() -> dict[str, int]:
    """How many calls of each operation (``service.Operation``) this process has made through
    ``client``'s clients: what a driver logs at its run's end."""
    with _calls_lock:
        return dict(sorted(_calls.items()))


def _forget_in_child() -> None:
    """A forked child (local mode's Lambda environments and drivers, a test's forked command)
    makes its own clients: its parent's hold pooled connections the two would share, and the
    parent may have held the lock at the fork."""
    global _lock, _session, _calls_lock
    _lock = threading.Lock()
    _clients.clear()
    _session = None
    _calls_lock = threading.Lock()
    _calls.clear()  # (the child counts its own)


os.register_at_fork(after_in_child=_forget_in_child)


def client(service: str, region: str | None = None, config: botocore.config.Config = RETRY_CONFIG) -> Any:
    """A cached, thread-safe boto3 client for ``service`` (``config``: ``RETRY_CONFIG`` or
    ``LOOKUP_CONFIG``)."""
    global _session
    key = (service, region, id(config))
    with _lock:
        found = _clients.get(key)
        if found is None:
            if _session is None:
                _session = boto3.session.Session()
                _session.events.register("before-call", _count_call)
                _session.events.register("before-send.s3", _send_small_bodies_at_once)
            found = _session.client(service, region_name=region, config=config)
            _clients[key] = found
        return found


def sdk_parameters(service: str, operation: str, params: dict[str, Any], to_sdk: bool = True) -> dict[str, Any]:
    """A request's parameters as AWS's "aws-sdk" integrations name them, every member PascalCase
    even for a service whose API is camelCase (ECS): EventBridge Scheduler's universal targets
    take their Input so, as Step Functions' AWS SDK integrations take their Parameters
    (https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html,
    https://docs.aws.amazon.com/scheduler/latest/UserGuide/managing-targets-universal.html); or,
    ``to_sdk`` False, back to the service model's member names, as boto3 takes them. Walks the
    operation's input shape: a map's keys and every value stay as they are."""
    shape = client(service).meta.service_model.operation_model(operation).input_shape

    def pascal(name: str) -> str:
        return name[:1].upper() + name[1:]

    def walk(value: Any, shape: Any) -> Any:
        if shape is None:
            return value
        if shape.type_name == "structure" and isinstance(value, dict):
            members = shape.members
            named = {pascal(m): m for m in members} if not to_sdk else {}
            out = {}
            for key, item in value.items():
                member = key if to_sdk else named.get(key, key)
                out[pascal(member) if to_sdk else member] = walk(item, members.get(member))
            return out
        if shape.type_name == "list" and isinstance(value, list):
            return [walk(item, shape.member) for item in value]
        if shape.type_name == "map" and isinstance(value, dict):
            return {key: walk(item, shape.value) for key, item in value.items()}
        return value

    return walk(params, shape)


class _SearchPaths(list):
    """A loader's search paths that take each folder once: boto3 appends its data folder to the
    loader of every session it makes, and with share_data_loaders they all share one loader."""

    def append(self, path) -> None:
        if path not in self:
            super().append(path)


def share_data_loaders() -> None:
    """Let every botocore session of this process share one data loader (per AWS_DATA_PATH), so
    that each service model, endpoint rule set and endpoints.json is read and parsed from JSON once
    per process rather than once per session. A loader caches what it loaded and hands out the same
    objects every time, which is what one session already does with its own loader. For local
    mode's stack process (moto makes a session per backend and per region listing: its EC2 backend
    alone read EC2's model three times) and fork servers (before they fork), and the tests'
    process; a Lambda function or driver on AWS does not call it. Called again, it keeps the
    loaders it made (and what they parsed)."""
    if getattr(botocore.session.create_loader, "shared", False):
        return
    loaders: dict[str | None, botocore.loaders.Loader] = {}

    def create_loader(search_path_string: str | None = None) -> botocore.loaders.Loader:
        """botocore.loaders.create_loader, once per AWS_DATA_PATH."""
        if search_path_string not in loaders:
            extra = [os.path.expanduser(os.path.expandvars(p)) for p in (search_path_string or "").split(os.pathsep) if p]
            # (the Loader keeps the list it is given, and adds botocore's own folders to it)
            loaders[search_path_string] = botocore.loaders.Loader(extra_search_paths=_SearchPaths(extra))
        return loaders[search_path_string]

    create_loader.shared = True  # type: ignore[attr-defined]
    botocore.session.create_loader = create_loader


def preload_models(services: Iterable[str]) -> None:
    """Read the botocore data a client of each of ``services`` and its paginators need into the
    shared loader (share_data_loaders): a client made after this, in this process or in a child
    forked from it, parses no JSON. Making a client sends nothing; the credentials given keep botocore from
    looking for any."""
    session = boto3.session.Session(aws_access_key_id="preload", aws_secret_access_key="preload", region_name="us-east-1")
    for service in services:
        client = session.client(service, config=RETRY_CONFIG)
        # and its paginators' model, which a client reads at its first get_paginator or
        # can_paginate (a driver's ListTasks pages: a twentieth of its CPU in a hello run)
        client.can_paginate(next(iter(client.meta.method_to_api_mapping)))


def reset() -> None:
    """Forget cached clients (tests that change the environment call this)."""
    global _session
    with _lock:
        _clients.clear()
        _session = None


def region() -> str:
    return client("sts").meta.region_name


T = TypeVar("T")
R = TypeVar("R")


def each(call: Callable[[T], R], items: Iterable[T], threads: int) -> list[R]:
    """``call`` of each of ``items`` (AWS requests, which wait more than they work), ``threads``
    at a time; the results in ``items``' order. The first exception ``call`` raises, in that
    order, is raised (once every call has ended)."""
    from concurrent.futures import ThreadPoolExecutor

    items = list(items)
    if len(items) < 2:
        return [call(item) for item in items]
    with ThreadPoolExecutor(min(threads, len(items)), thread_name_prefix="aws-each") as pool:
        return list(pool.map(call, items))
