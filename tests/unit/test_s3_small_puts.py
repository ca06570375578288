"""What the client factory's S3 clients put on the wire for a PUT (``aws.CONTINUE_THRESHOLD``): a
body under 2 MiB goes with its headers, without ``Expect: 100-continue``; a bigger one still waits
for S3's 100 Continue. Against a small HTTP/1.1 server that records each request as it came, over
plain HTTP (local mode: the body's size in Content-Length) and over HTTPS (AWS: botocore sends the
body in chunks with its checksum in a trailer, and says its size in X-Amz-Decoded-Content-Length)."""

from __future__ import annotations

import base64
import contextlib
import datetime
import io
import ipaddress
import ssl
import zlib
from collections.abc import Iterator

import pytest

from miniwdl_fargate import aws
from tests.http_servers import QuietHandler, serving


class RecordingS3(QuietHandler):
    """Answers every PUT as S3 does (200, an ETag), after a 100 Continue where one is asked for
    (``http.server`` sends it for an HTTP/1.1 request); records its headers and its body's length
    (a chunked body read to its end, its trailer's checksum checked). A request it cannot read gets
    a 400 that says why (botocore does not retry a 400: the test fails at once, saying it)."""

    protocol_version = "HTTP/1.1"
    timeout = 10  # (a body shorter than it says fails the test, instead of hanging it)
    seen: list[dict] = []

    @staticmethod
    def chunks(stream: io.BufferedIOBase) -> tuple[bytes, dict[str, str]]:
        """A chunked body read to its end: its data and its trailer (HTTP's chunked transfer
        coding and S3's aws-chunked content coding are written alike)."""
        data, trailer = b"", {}
        while size := int(stream.readline().split(b";")[0], 16):
            data += stream.read(size)
            stream.readline()
        while (line := stream.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            trailer[name.strip().lower()] = value.strip()
        return data, trailer

    def chunked_body(self) -> bytes:
        """The body as S3 stores it: HTTP's chunks joined, and, where it says aws-chunked
        (botocore's checksum in a trailer), those chunks' own data, its CRC32 checked."""
        body, _ = self.chunks(self.rfile)
        if "aws-chunked" in self.headers.get("Content-Encoding", ""):
            body, trailer = self.chunks(io.BytesIO(body))
            decoded = self.headers.get("X-Amz-Decoded-Content-Length")
            if decoded is not None and int(decoded) != len(body):
                raise ValueError(f"X-Amz-Decoded-Content-Length {decoded}, body {len(body)} bytes")
            crc32 = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
            if trailer != {"x-amz-checksum-crc32": crc32}:
                raise ValueError(f"trailer {trailer}, where the body's CRC32 is {crc32}")
        return body

    def do_PUT(self) -> None:
        chunked = self.headers.get("Transfer-Encoding") == "chunked"
        try:
            body = self.chunked_body() if chunked else self.body()
        except ValueError as exn:
            message = f"<Error><Code>BadRequest</Code><Message>{exn}</Message></Error>".encode()
            self.send_response(400)
            self.send_header("Content-Length", str(len(message)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(message)
            return
        RecordingS3.seen.append({"path": self.path, "expect": self.headers.get("Expect"), "length": len(body), "chunked": chunked})
        self.send_response(200)
        self.send_header("ETag", '"0"')
        self.send_header("Content-Length", "0")
        self.end_headers()


def self_signed(folder) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key (PEM files in ``folder``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@contextlib.contextmanager
def recording_s3(scheme: str, monkeypatch, folder) -> Iterator[list[dict]]:
    """``RecordingS3`` serving over ``scheme`` (http or https: a certificate of its own, which
    ``AWS_CA_BUNDLE`` makes botocore trust), every ``aws.client`` pointed at it: the requests
    it saw."""
    RecordingS3.seen = []
    tls = None
    if scheme == "https":
        cert, key = self_signed(folder)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert, key)
        monkeypatch.setenv("AWS_CA_BUNDLE", cert)
    with serving(RecordingS3, tls) as url:
        for name, value in aws.local_environment(url, "us-east-1").items():
            monkeypatch.setenv(name, value)
        aws.reset()
        yield RecordingS3.seen
    aws.reset()


@pytest.fixture(params=["http", "https"])
def recorded_s3(request, monkeypatch, tmp_path):
    """The requests an ``aws.client("s3")`` sends, as the server saw them, and whether they went
    over HTTPS."""
    with recording_s3(request.param, monkeypatch, tmp_path) as seen:
        yield seen, request.param == "https"


@pytest.fixture
def recorded_https_s3(monkeypatch, tmp_path):
    with recording_s3("https", monkeypatch, tmp_path) as seen:
        yield seen


def test_a_small_put_goes_without_waiting_for_100_continue_and_a_big_one_still_waits(recorded_s3):
    seen, https = recorded_s3
    s3 = aws.client("s3")
    big = aws.CONTINUE_THRESHOLD
    s3.put_object(Bucket="b", Key="small.json", Body=b'{"a": 1}')
    s3.put_object(Bucket="b", Key="empty", Body=b"")
    s3.put_object(Bucket="b", Key="under", Body=io.BytesIO(b"x" * (big - 1)))
    s3.put_object(Bucket="b", Key="if-absent.json", Body=b"{}", IfNoneMatch="*")
    s3.upload_fileobj(io.BytesIO(b"streamed"), "b", "streamed.txt")
    s3.put_object(Bucket="b", Key="big", Body=b"x" * big)
    assert [(r["path"], r["expect"], r["length"]) for r in seen] == [
        ("/b/small.json", None, 8),
        ("/b/empty", None, 0),
        ("/b/under", None, big - 1),
        ("/b/if-absent.json", None, 2),
        ("/b/streamed.txt", None, 8),
        ("/b/big", "100-continue", big),
    ]
    # (over HTTPS, botocore sends each body in chunks, its checksum in a trailer, as it does to S3)
    assert [r["chunked"] for r in seen if r["length"]] == [https] * 5


class Unsized(io.RawIOBase):
    """A stream that says nothing of its size and cannot seek (a pipe's)."""

    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self.data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_a_body_whose_size_the_request_does_not_say_still_waits(recorded_https_s3):
    """(Over HTTPS, as to S3: over HTTP botocore puts the body's checksum in a header, which it
    cannot do without reading the stream first, and a stream that cannot seek is read once.)"""
    seen = recorded_https_s3
    aws.client("s3").put_object(Bucket="b", Key="unsized", Body=Unsized(b"unsized body"))
    assert [(r["path"], r["expect"], r["length"], r["chunked"]) for r in seen] == [("/b/unsized", "100-continue", 12, True)]


def test_without_the_factorys_handler_botocore_asks_every_put_to_wait(recorded_s3):
    """The still-needed check: botocore itself still adds the header to a small PUT (if this
    fails, botocore has a threshold of its own and ``_send_small_bodies_at_once`` can go)."""
    seen, _ = recorded_s3
    s3 = aws.client("s3")
    s3.meta.events.unregister("before-send.s3", aws._send_small_bodies_at_once)
    s3.put_object(Bucket="b", Key="small.json", Body=b'{"a": 1}')
    assert [(r["expect"], r["length"]) for r in seen] == [("100-continue", 8)]


@pytest.mark.parametrize(
    "headers, kept",
    [
        ({"Expect": b"100-continue", "Content-Length": "12"}, False),
        ({"Expect": "100-Continue", "Content-Length": b"12"}, False),
        ({"Expect": b"100-continue", "Transfer-Encoding": "chunked", "X-Amz-Decoded-Content-Length": "12"}, False),
        ({"Expect": b"100-continue", "Transfer-Encoding": "chunked"}, True),  # a body of unknown length
        ({"Expect": b"100-continue"}, True),
        ({"Expect": b"100-continue", "Content-Length": str(2 * 1024 * 1024)}, True),
        ({"Expect": b"100-continue", "Content-Length": "twelve"}, True),
    ],
)
def test_the_header_is_dropped_only_for_a_body_known_to_be_small(headers, kept):
    from botocore.awsrequest import AWSPreparedRequest, HeadersDict

    request = AWSPreparedRequest("PUT", "http://s3/b/k", HeadersDict(headers), b"", False)
    aws._send_small_bodies_at_once(request)
    assert ("Expect" in request.headers) is kept
