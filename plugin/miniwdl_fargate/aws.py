"""The one boto3 client factory.

Every AWS call of the product (Lambda handlers, driver, backend, local mode) gets its client here,
so retry behaviour and endpoints are configured in one place. The endpoint follows botocore's own
``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>`` variables, which is how local mode points the
same code at the embedded moto server.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import boto3
import boto3.session
import botocore.config
import botocore.loaders
import botocore.session

# botocore's "standard" retry mode: exponential backoff with jitter on throttling and transient
# errors, with a retry quota. Callers that need more (RunTask capacity failures) add their own.
RETRY_CONFIG = botocore.config.Config(
    retries={"mode": "standard", "max_attempts": 8},
    max_pool_connections=64,
    connect_timeout=10,
    read_timeout=60,
)

#: variables naming a profile or the machine's config and credentials files
#: (https://boto3.amazonaws.com/v1/documentation/api/latest/guide/configuration.html): local mode
#: removes them, so no setting of a real account's profile reaches a local run
SHARED_CONFIG_VARIABLES = ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")


def local_environment(endpoint: str, region: str) -> dict[str, str]:
    """The environment that points AWS clients at local mode's moto server: its endpoint
    (botocore's ``AWS_ENDPOINT_URL``), fake credentials (moto takes any) and its region."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }


_lock = threading.Lock()
_session: boto3.session.Session | None = None
_clients: dict[tuple[str, str | None], Any] = {}
#: the botocore loader every session made here shares, with what ``preload_models`` read
#: (None: each session has its own), and the AWS_DATA_PATH it was made for
_loader: tuple[str | None, botocore.loaders.Loader] | None = None


def client(service: str, region: str | None = None) -> Any:
    """A cached, thread-safe boto3 client for ``service``."""
    global _session
    key = (service, region)
    with _lock:
        found = _clients.get(key)
        if found is None:
            if _session is None:
                _session = _new_session()
            found = _session.client(service, region_name=region, config=RETRY_CONFIG)
            _clients[key] = found
        return found


def _new_session() -> boto3.session.Session:
    """A session; with the preloaded loader, if any (and if the data path is still its)."""
    core = botocore.session.Session()
    shared = _loader[1] if _loader is not None and _loader[0] == os.environ.get("AWS_DATA_PATH") else None
    if shared is not None:
        core.register_component("data_loader", shared)
    session = boto3.session.Session(botocore_session=core)
    if shared is not None:  # (boto3 adds its own data folder to the loader's search path each time)
        shared.search_paths[:] = list(dict.fromkeys(shared.search_paths))
    return session


def preload_models(services: tuple[str, ...]) -> None:
    """Read the service models, endpoint rules and the rest of what creating a client of each of
    ``services`` reads (botocore's JSON files) into one loader, which every session made here
    from now on shares: a process forked after this (local mode's ``driver_zygote``) creates
    its clients without reading and parsing them again. The files are botocore's own data
    (https://docs.aws.amazon.com/botocore/latest/reference/loaders.html), the same for every
    session of a process with the same AWS_DATA_PATH; no credentials are looked up and no request
    is made (the clients made to fill the loader are dropped)."""
    global _loader
    data_path = os.environ.get("AWS_DATA_PATH")
    core = botocore.session.Session()
    boto3.session.Session(botocore_session=core)  # (the loader's search path as boto3 sets it)
    loader = core.get_component("data_loader")
    for service in services:
        core.create_client(
            service, region_name="us-east-1", aws_access_key_id="preload", aws_secret_access_key="preload",
            config=RETRY_CONFIG,
        )
    with _lock:
        _loader = (data_path, loader)


def reset() -> None:
    """Forget cached clients (tests that change the environment call this); a preloaded loader
    stays (botocore's data does not change)."""
    global _session
    with _lock:
        _clients.clear()
        _session = None


def region() -> str:
    return client("sts").meta.region_name
