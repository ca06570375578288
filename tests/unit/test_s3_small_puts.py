"""What the client factory's S3 clients put on the wire for a PUT (``aws.CONTINUE_THRESHOLD``): a
body under 2 MB goes with its headers, without ``Expect: 100-continue``; a bigger one still waits
for S3's 100 Continue. Against a small HTTP/1.1 server that records each request as it came."""

from __future__ import annotations

import io

import pytest

from miniwdl_fargate import aws
from tests.http_servers import QuietHandler, serving


class RecordingS3(QuietHandler):
    """Answers every PUT as S3 does (200, an ETag), after a 100 Continue where one is asked for
    (``http.server`` sends it for an HTTP/1.1 request); records the headers and the body length."""

    protocol_version = "HTTP/1.1"
    seen: list[dict] = []

    def do_PUT(self) -> None:
        body = self.body()
        RecordingS3.seen.append({"path": self.path, "expect": self.headers.get("Expect"), "length": len(body)})
        self.send_response(200)
        self.send_header("ETag", '"0"')
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def recorded_s3(monkeypatch):
    RecordingS3.seen = []
    with serving(RecordingS3) as url:
        for key, value in aws.local_environment(url, "us-east-1").items():
            monkeypatch.setenv(key, value)
        aws.reset()
        yield RecordingS3.seen
    aws.reset()


def test_a_small_put_goes_without_waiting_for_100_continue_and_a_big_one_still_waits(recorded_s3):
    s3 = aws.client("s3")
    big = aws.CONTINUE_THRESHOLD
    s3.put_object(Bucket="b", Key="small.json", Body=b'{"a": 1}')
    s3.put_object(Bucket="b", Key="empty", Body=b"")
    s3.put_object(Bucket="b", Key="under", Body=io.BytesIO(b"x" * (big - 1)))
    s3.put_object(Bucket="b", Key="if-absent.json", Body=b"{}", IfNoneMatch="*")
    s3.put_object(Bucket="b", Key="big", Body=b"x" * big)
    assert [(r["path"], r["expect"], r["length"]) for r in recorded_s3] == [
        ("/b/small.json", None, 8),
        ("/b/empty", None, 0),
        ("/b/under", None, big - 1),
        ("/b/if-absent.json", None, 2),
        ("/b/big", "100-continue", big),
    ]


def test_without_the_factorys_handler_botocore_asks_every_put_to_wait(recorded_s3):
    """The still-needed check: botocore itself still adds the header to a small PUT (if this
    fails, botocore has a threshold of its own and ``_send_small_bodies_at_once`` can go)."""
    s3 = aws.client("s3")
    s3.meta.events.unregister("before-send.s3", aws._send_small_bodies_at_once)
    s3.put_object(Bucket="b", Key="small.json", Body=b'{"a": 1}')
    assert [(r["expect"], r["length"]) for r in recorded_s3] == [("100-continue", 8)]


@pytest.mark.parametrize(
    "headers, kept",
    [
        ({"Expect": b"100-continue", "Content-Length": "12"}, False),
        ({"Expect": "100-Continue", "Content-Length": b"12"}, False),
        ({"Expect": b"100-continue"}, True),  # a body of unknown length
        ({"Expect": b"100-continue", "Content-Length": str(2 * 1024 * 1024)}, True),
        ({"Expect": b"100-continue", "Content-Length": "twelve"}, True),
    ],
)
def test_the_header_is_dropped_only_for_a_body_known_to_be_small(headers, kept):
    from botocore.awsrequest import AWSPreparedRequest, HeadersDict

    request = AWSPreparedRequest("PUT", "http://s3/b/k", HeadersDict(headers), b"", False)
    aws._send_small_bodies_at_once(request)
    assert ("Expect" in request.headers) is kept
