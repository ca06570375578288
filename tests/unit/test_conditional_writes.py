"""One check for S3 refusing a conditional request (s3io.condition_failed) and one put-if-absent,
used by every conditional write and read of the pipeline; the requests checked against botocore's
model by its Stubber."""

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from miniwdl_fargate import aws, s3io


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "..."}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


@pytest.mark.parametrize(
    ("code", "status"),
    [("PreconditionFailed", 412), ("412", 412), ("ConditionalRequestConflict", 409), ("409", 409)],
)
def test_what_s3_answers_a_failed_condition_is_one_check(code, status):
    assert s3io.condition_failed(client_error(code, status))


@pytest.mark.parametrize(("code", "status"), [("AccessDenied", 403), ("NoSuchKey", 404), ("SlowDown", 503)])
def test_other_errors_are_not_a_failed_condition(code, status):
    assert not s3io.condition_failed(client_error(code, status))
    assert not s3io.condition_failed(ValueError("not a ClientError"))


@pytest.fixture
def s3(monkeypatch):
    client = boto3.client("s3", region_name="us-east-1")
    monkeypatch.setattr(aws, "client", lambda service, region=None: client)
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def expected(**extra):
    return {"Bucket": "b", "Key": "k", "Body": b"{}", "IfNoneMatch": "*", **extra}


def test_put_if_absent_writes_when_there_is_no_object(s3):
    s3.add_response("put_object", {"ETag": '"e"'}, expected(ContentType="application/json"))
    assert s3io.put_if_absent("b", "k", b"{}", "application/json") is True


def test_put_if_absent_says_another_write_was_first(s3):
    s3.add_client_error("put_object", "PreconditionFailed", http_status_code=412, expected_params=expected())
    assert s3io.put_if_absent("b", "k", b"{}") is False


def test_put_if_absent_tries_again_while_another_write_to_the_key_is_in_progress(s3, monkeypatch):
    """409 ConditionalRequestConflict: a write racing this one, which may yet fail or be deleted
    ("you should retry the upload", API_PutObject); botocore does not retry it. It counted as
    "an object is there" at once (a submission then read a key that was not there)."""
    monkeypatch.setattr(s3io, "CONFLICT_RETRY_WAITS", (0.0, 0.0))
    s3.add_client_error("put_object", "ConditionalRequestConflict", http_status_code=409, expected_params=expected())
    s3.add_response("put_object", {"ETag": '"e"'}, expected())
    assert s3io.put_if_absent("b", "k", b"{}") is True
    for _ in range(3):  # (conflicts every time: as there, once the retries are spent)
        s3.add_client_error("put_object", "ConditionalRequestConflict", http_status_code=409, expected_params=expected())
    assert s3io.put_if_absent("b", "k", b"{}") is False


def test_put_if_absent_raises_any_other_error(s3):
    s3.add_client_error("put_object", "AccessDenied", http_status_code=403, expected_params=expected())
    with pytest.raises(ClientError, match="AccessDenied"):
        s3io.put_if_absent("b", "k", b"{}")


def test_one_upload_is_its_version_else_its_quoted_etag():
    assert s3io.one_upload("v1", "abc") == {"VersionId": "v1"}
    assert s3io.one_upload("null", "abc") == {"IfMatch": '"abc"'}  # an unversioned bucket's event
    assert s3io.one_upload(None, '"abc"') == {"IfMatch": '"abc"'}
    assert s3io.one_upload(None, None) == {}


def test_the_inputs_are_read_and_sized_at_their_upload_alone(s3):
    """snapshot.read_version and start.check_inputs_size ask for the same upload (they had drifted:
    one sent the ETag unquoted)."""
    import io

    from botocore.response import StreamingBody

    from miniwdl_fargate.pipeline import snapshot, start

    s3.add_response("head_object", {"ContentLength": 2}, {"Bucket": "b", "Key": "k", "IfMatch": '"abc"'})
    start.check_inputs_size("b", "k", "null", "abc", None)
    s3.add_response(
        "get_object", {"Body": StreamingBody(io.BytesIO(b"{}"), 2)}, {"Bucket": "b", "Key": "k", "IfMatch": '"abc"'}
    )
    assert snapshot.read_version("b", "k", "null", "abc") == b"{}"
    s3.add_client_error("get_object", "PreconditionFailed", http_status_code=412, expected_params={"Bucket": "b", "Key": "k", "VersionId": "v1"})
    with pytest.raises(snapshot.SnapshotError, match="was replaced before this upload could be read"):
        snapshot.read_version("b", "k", "v1", "abc")
