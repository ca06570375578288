"""The one boto3 client factory.

Every AWS call of the product (Lambda handlers, driver, backend, local mode) gets its client here,
so retry behaviour and endpoints are configured in one place. The endpoint follows botocore's own
``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>`` variables, which is how local mode points the
same code at the embedded moto server.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
import botocore.config

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


def client(service: str, region: str | None = None) -> Any:
    """A cached, thread-safe boto3 client for ``service``."""
    global _session
    key = (service, region)
    with _lock:
        found = _clients.get(key)
        if found is None:
            if _session is None:
                _session = boto3.session.Session()
            found = _session.client(service, region_name=region, config=RETRY_CONFIG)
            _clients[key] = found
        return found


def reset() -> None:
    """Forget cached clients (tests that change the environment call this)."""
    global _session
    with _lock:
        _clients.clear()
        _session = None


def region() -> str:
    return client("sts").meta.region_name
