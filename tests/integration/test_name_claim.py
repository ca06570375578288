"""A submission's claim on its run name (``upload.name_claimed``): S3 conditional writes, against moto."""

import json
import threading

import pytest

from miniwdl_fargate import aws, upload
from tests.waiting import wait_for

KEY = "runs/shared/.submitting"


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
    with pytest.raises(upload.RunInputError, match="run name 'shared' is still claimed by another submission after 0s"):
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


def test_a_claim_held_past_its_lease_is_renewed_and_one_taken_over_is_known_lost(bucket):
    """A long upload keeps its claim (renewed every third of its lease), so no one takes it over
    meanwhile; a claim taken over all the same (its renewals could not reach S3) is known lost."""
    with upload.name_claimed(bucket, "shared", lease=0.6) as lost:
        first = claim(bucket)
        with pytest.raises(upload.RunInputError, match="still claimed"):
            with upload.name_claimed(bucket, "shared", wait=1.5, lease=0.6):
                pass
        assert claim(bucket)["token"] == first["token"] and claim(bucket)["until"] > first["until"] and not lost()
    with upload.name_claimed(bucket, "shared", lease=0.6) as lost:
        aws.client("s3").put_object(Bucket=bucket, Key=KEY, Body=json.dumps({"token": "other", "until": 1e12}).encode())
        wait_for(lost, timeout=10, what="the claim known lost", interval=0.05)
    assert claim(bucket)["token"] == "other"


def test_a_claim_whose_last_renewal_answer_was_lost_is_still_given_up(bucket, monkeypatch):
    """A renewal's write can land while its answer is lost: the claim then has an ETag its holder
    never saw. Given up, it is recognised by its token and removed all the same (it held the name
    up to its lease before)."""
    from miniwdl_fargate import s3io

    with upload.name_claimed(bucket, "shared"):
        mine = claim(bucket)
        aws.client("s3").put_object(Bucket=bucket, Key=KEY, Body=json.dumps(mine | {"until": mine["until"] + 1}).encode())
    assert s3io.read_claim(bucket, KEY) is None


@pytest.mark.parametrize("held_first", [False, True])
def test_a_claim_is_taken_where_there_is_none_or_over_one_let_go_and_of_two_takers_one_wins(bucket, held_first):
    """s3io.take_claim, which the run name's claim and the driver slots share."""
    from miniwdl_fargate import s3io

    mine = json.dumps({"token": "mine"}).encode()
    first = s3io.take_claim(bucket, KEY, json.dumps({"token": "first"}).encode(), lambda held: False, held_first)
    assert first.etag and first.held is None
    holding = s3io.take_claim(bucket, KEY, mine, lambda held: False, held_first)
    assert holding.etag is None and holding.held.doc == {"token": "first"}
    taken = s3io.take_claim(bucket, KEY, mine, lambda held: held.doc["token"] == "first", held_first)
    assert taken.etag and taken.held.doc == {"token": "first"} and claim(bucket) == {"token": "mine"}

    def another_takes_it_first(held):
        aws.client("s3").put_object(Bucket=bucket, Key=KEY, Body=json.dumps({"token": "other"}).encode())
        return True

    lost = s3io.take_claim(bucket, KEY, json.dumps({"token": "late"}).encode(), another_takes_it_first, held_first)
    assert (lost.etag, lost.held) == (None, None) and claim(bucket) == {"token": "other"}
    assert s3io.remove_claim(bucket, KEY, taken.etag) is False  # (not the claim it took any more)


def test_a_renewal_whose_answer_was_lost_keeps_the_claim(bucket):
    """Its write landed (the claim has an ETag this never saw), botocore's retry of it was refused:
    the claim carries this submission's token, so it is still held, not known lost."""
    with upload.name_claimed(bucket, "shared", lease=0.6) as lost:
        mine = claim(bucket)
        aws.client("s3").put_object(Bucket=bucket, Key=KEY, Body=json.dumps(mine | {"until": mine["until"] + 0.01}).encode())
        wait_for(lambda: claim(bucket)["until"] > mine["until"] + 0.1, timeout=10, what="a renewal after it", interval=0.05)
        assert not lost() and claim(bucket)["token"] == mine["token"]
