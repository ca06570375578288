"""What the one client factory counts of a process's AWS calls (``aws.calls``: what a driver
logs at its run's end), against in-process moto."""

import os

import pytest

from miniwdl_fargate import aws
from tests.forked import run_forked


def made_since(before: dict[str, int]) -> dict[str, int]:
    now = aws.calls()
    return {name: count - before.get(name, 0) for name, count in now.items() if count != before.get(name, 0)}


def test_each_call_is_counted_once_by_service_and_operation(moto_aws):
    before = aws.calls()
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="counted")
    s3.list_objects_v2(Bucket="counted")
    s3.list_objects_v2(Bucket="counted", Prefix="x/")
    with pytest.raises(s3.exceptions.NoSuchKey):  # (a call answered with an error is a call too)
        s3.get_object(Bucket="counted", Key="missing")
    aws.client("ecs").list_clusters()
    assert made_since(before) == {"ecs.ListClusters": 1, "s3.CreateBucket": 1, "s3.GetObject": 1, "s3.ListObjectsV2": 2}


def test_a_forked_child_counts_its_own_calls(moto_aws):
    aws.client("s3").list_buckets()
    assert aws.calls().get("s3.ListBuckets", 0) >= 1

    def child(argv):
        print(aws.calls())
        return 0 if aws.calls() == {} else 1

    result = run_forked(child, [], env=dict(os.environ))
    assert result.returncode == 0, result.stdout + result.stderr
