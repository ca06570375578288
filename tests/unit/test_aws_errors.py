"""aws.throttled and aws.passing: what an AWS error that botocore's retries gave up on says, by
botocore's own standard-mode rules, for every caller that decides whether to look again (the
launcher, the task poller, the launch step's driver slots, a followed log)."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointResolutionError,
    EndpointConnectionError,
    FlexibleChecksumError,
    IncompleteReadError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    ProfileNotFound,
    ReadTimeoutError,
)

from miniwdl_fargate import aws


def error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


@pytest.mark.parametrize(
    ("raised", "throttled", "passing"),
    [
        (error("ThrottlingException", 400), True, True),  # ECS, Service Quotas, CloudWatch Logs
        (error("TooManyRequestsException", 429), True, True),  # Lambda, API Gateway
        (error("SomethingNew", 429), True, True),  # (Too Many Requests, whatever its code)
        (error("RequestLimitExceeded", 503), True, True),  # EC2
        (error("SlowDown", 503), True, True),  # S3
        (error("InternalError", 500), False, True),
        (error("ServiceUnavailable", 503), False, True),
        (error("RequestTimeout", 400), False, True),
        (error("AccessDeniedException", 400), False, False),
        (error("NoSuchResourceException", 404), False, False),
        (error("InvalidParameterException", 400), False, False),
        (EndpointConnectionError(endpoint_url="https://ecs.us-east-1.amazonaws.com"), False, True),
        (ConnectTimeoutError(endpoint_url="https://ecs.us-east-1.amazonaws.com"), False, True),
        (ReadTimeoutError(endpoint_url="https://ecs.us-east-1.amazonaws.com"), False, True),
        (IncompleteReadError(actual_bytes=10, expected_bytes=100), False, True),  # (a body cut short on the way)
        (FlexibleChecksumError(error_msg="checksum mismatch"), False, True),
        (NoCredentialsError(), False, False),  # (no later look has credentials either)
        (NoRegionError(), False, False),
        (ProfileNotFound(profile="lab"), False, False),
        (EndpointResolutionError(msg="no endpoint"), False, False),
        (CredentialRetrievalError(provider="container-role", error_msg="timed out"), False, True),
        (ParamValidationError(report="bad request"), False, False),
    ],
)
def test_an_error_is_throttling_or_passing_as_botocores_standard_retries_take_it(raised, throttled, passing):
    assert aws.throttled(raised) is throttled
    assert aws.passing(raised) is passing


def test_a_failed_attempts_parsed_response_is_read_as_its_error():
    """What botocore's after-call hooks hand the launcher: the parsed response, not an exception."""
    assert aws.throttled({"Error": {"Code": "ThrottlingException"}, "ResponseMetadata": {"HTTPStatusCode": 400}})
    assert not aws.throttled({"Error": {"Code": "ClientException"}, "ResponseMetadata": {"HTTPStatusCode": 400}})
    assert not aws.throttled({"tasks": [], "failures": []})


def test_an_errors_code_is_its_client_errors_code_else_empty():
    assert aws.error_code(error("NoSuchKey", 404)) == "NoSuchKey"
    assert aws.error_code(ClientError({"Error": {}, "ResponseMetadata": {"HTTPStatusCode": 412}}, "PutObject")) == ""
    assert aws.error_code(EndpointConnectionError(endpoint_url="https://s3.amazonaws.com")) == ""
    assert aws.error_code(ValueError("not AWS's")) == ""
