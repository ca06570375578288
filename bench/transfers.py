"""Benchmark: moving many small objects one at a time vs in parallel (s3io.Transfers).

Against in-process moto S3 (no network, no credentials), it downloads a prefix of N objects and
uploads N files twice each: one object at a time (boto3's download_file / upload_file in a loop,
as the driver did before) and through s3io.Transfers (one bounded s3transfer TransferManager),
checks that every object arrived, and prints the times, objects per second and the ratio,
measured in the same run. moto answers in microseconds; S3's median latency for small requests
is "in the tens of milliseconds"
(https://docs.aws.amazon.com/whitepapers/latest/s3-optimizing-performance-best-practices/timeouts-and-retries-for-latency-sensitive-applications.html),
so each request waits ``--latency-ms`` (default 20) before moto answers it: the wait a real
request spends on the network, which parallel transfers overlap. ``--latency-ms 0`` measures
moto and the client alone (CPU-bound: the 2 cores are then the limit).

The last line is one JSON object with the keys objects_down, objects_up, latency_ms,
concurrency, and for down and up: sequential_s, parallel_s, ratio.

    python bench/transfers.py                              # 400 objects each way, under a minute
    python bench/transfers.py --down 20000 --up 50000      # the issue's sizes (sequential: ~1 h)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "plugin"))
from moto import mock_aws  # noqa: E402

from miniwdl_fargate import aws, s3io  # noqa: E402

BUCKET = "bench"


def add_latency(seconds: float) -> None:
    """Every S3 request of the shared client waits ``seconds`` before it is sent (to moto)."""
    if seconds <= 0:
        return

    def wait(**_: object) -> None:
        time.sleep(seconds)

    aws.client("s3").meta.events.register("before-sign.s3", wait)


def rel(i: int) -> str:
    return f"d{i % 10}/sub{i % 7}/obj{i:06d}.txt"


def make_files(root: str, n: int) -> list[tuple[str, str]]:
    """(path, relative path) of n small files under root."""
    made = []
    for i in range(n):
        path = os.path.join(root, rel(i))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as out:
            out.write(rel(i))
        made.append((path, rel(i)))
    return made


def check_down(dest: str, n: int) -> None:
    got = sum(len(files) for _, _, files in os.walk(dest))
    if got != n or open(os.path.join(dest, rel(n - 1))).read() != rel(n - 1):
        raise SystemExit(f"download incomplete: {got} of {n} objects in {dest}")


def check_up(prefix: str, n: int) -> None:
    got = sum(1 for _ in s3io.list_keys(BUCKET, prefix))
    if got != n:
        raise SystemExit(f"upload incomplete: {got} of {n} objects under s3://{BUCKET}/{prefix}")


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def put_sources(n: int) -> None:
    s3 = aws.client("s3")
    for i in range(n):
        s3.put_object(Bucket=BUCKET, Key=f"src/{rel(i)}", Body=rel(i).encode())


def bench_down(work: str, n: int, concurrency: int) -> tuple[float, float]:
    targets = s3io.prefix_targets(BUCKET, "src/", os.path.join(work, "seq"))

    def one_at_a_time() -> None:
        for bucket, key, path, *_ in targets:
            s3io.download_to(bucket, key, path)

    def parallel() -> None:
        with s3io.Transfers(concurrency=concurrency) as transfers:
            s3io.download_prefix(BUCKET, "src/", os.path.join(work, "par"), transfers=transfers)

    seq = timed(one_at_a_time)
    check_down(os.path.join(work, "seq"), n)
    par = timed(parallel)
    check_down(os.path.join(work, "par"), n)
    return seq, par


def bench_up(work: str, n: int, concurrency: int) -> tuple[float, float]:
    files = make_files(os.path.join(work, "files"), n)

    def one_at_a_time() -> None:
        for path, name in files:
            s3io.upload_file(path, BUCKET, f"seq/{name}")

    def parallel() -> None:
        with s3io.Transfers(concurrency=concurrency) as transfers:
            transfers.upload((path, BUCKET, f"par/{name}") for path, name in files)

    seq = timed(one_at_a_time)
    check_up("seq/", n)
    par = timed(parallel)
    check_up("par/", n)
    return seq, par


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--down", type=int, default=400, help="objects to download (default 400)")
    parser.add_argument("--up", type=int, default=400, help="files to upload (default 400)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="added to every S3 request (default 20)")
    parser.add_argument("--concurrency", type=int, default=s3io.transfer_concurrency(), help="parallel transfers")
    args = parser.parse_args(argv)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    figures: dict[str, object] = {
        "objects_down": args.down, "objects_up": args.up, "latency_ms": args.latency_ms, "concurrency": args.concurrency,
    }
    with mock_aws(), tempfile.TemporaryDirectory(prefix="bench-transfers.") as work:
        aws.reset()
        aws.client("s3").create_bucket(Bucket=BUCKET)
        put_sources(args.down)  # (before the latency is added: setting up is not measured)
        add_latency(args.latency_ms / 1000)
        for name, n, run in (("down", args.down, bench_down), ("up", args.up, bench_up)):
            if n <= 0:
                continue
            seq, par = run(work, n, args.concurrency)
            ratio = seq / par
            figures[name] = {"sequential_s": round(seq, 2), "parallel_s": round(par, 2), "ratio": round(ratio, 1)}
            verb = "download" if name == "down" else "upload"
            print(f"{verb} {n} objects ({args.latency_ms:g} ms a request): one at a time {seq:.1f}s ({n / seq:.0f}/s); "
                  f"parallel ({args.concurrency}) {par:.1f}s ({n / par:.0f}/s); ratio {ratio:.1f}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
