"""A submission's claim on its run name (``upload.name_claimed``): S3 conditional writes, against moto."""

import json
import threading

import pytest

from miniwdl_fargate import aws, upload

KEY = "runs/shared/.submitting"


@pytest.fixture
def bucket(moto_aws):
    aws.client("s3").create_bucket(Bucket="runs")
    return "runs"


def claim(bucket):
    return json.loads(aws.client("s3").get_object(Bucket=bucket, Key=KEY)["Body"].read())


def test_a_claim_is_held_while_uploading_and_given_up_after(bucket):
    s3 = aws.client("s3")
    with upload.name_claimed(bucket, "shared"):
        held = claim(bucket)
        assert set(held) == {"token", "until"}
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=KEY)


def test_a_second_submission_waits_for_the_first_and_gives_up_saying_why(bucket):
    order = []
    first_in = threading.Event()
    release = threading.Event()

    def first():
        with upload.name_claimed(bucket, "shared"):
            order.append("first")
            first_in.set()
            release.wait(30)

    thread = threading.Thread(target=first)
    thread.start()
    first_in.wait(30)
    with pytest.raises(upload.RunInputError, match="another submission of run name 'shared' has been uploading for over 0s"):
        with upload.name_claimed(bucket, "shared", wait=0.3):
            order.append("too soon")
    release.set()
    with upload.name_claimed(bucket, "shared", wait=30):  # (waits its turn)
        order.append("second")
    thread.join(30)
    assert order == ["first", "second"]


def test_a_claim_left_by_a_submission_that_died_is_taken_over_and_another_is_not_given_up(bucket):
    s3 = aws.client("s3")
    s3.put_object(Bucket=bucket, Key=KEY, Body=json.dumps({"token": "dead", "until": 0}).encode())
    with upload.name_claimed(bucket, "shared", wait=0.5):
        assert claim(bucket)["token"] != "dead"
        # taken over in turn meanwhile (this one ran past its time): not this one's to give up
        s3.put_object(Bucket=bucket, Key=KEY, Body=json.dumps({"token": "other", "until": 1e12}).encode())
    assert claim(bucket)["token"] == "other"
    s3.put_object(Bucket=bucket, Key=KEY, Body=b"not json")
    with upload.name_claimed(bucket, "shared", wait=0.5):  # (not a claim this writes: taken over)
        assert "token" in claim(bucket)
