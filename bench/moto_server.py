"""Benchmark: the CPU local mode's moto server spends on a request, and its client.

Local mode serves moto's application (``DomainDispatcherApplication``, each service's Flask app)
on werkzeug's threaded server, which closes every connection after one response: moto's own
``ThreadedMotoServer`` so starts a thread for every request. Local mode's ``MotoServer``
(``local/moto/server.py``) keeps its threads, each waiting for the next connection. This measures
both side by side in one run, ``--rounds`` times each, in turns:

- the server in this process (CORS off in both, as local mode runs it), a client in a fresh
  interpreter making ``--requests`` S3 requests one after another (PutObject then HeadObject of
  small objects, as the driver's call cache and the stack's Lambdas make them);
- the CPU this process spent meanwhile (the server: its waiting main thread costs nothing), and
  the client's (its own count, from its first request to its last).

The last line is one JSON object: per server, the median milliseconds of CPU per request of the
server and of the client, and the kept threads' server CPU over moto's own (``ratio``).

    make bench-moto-server              # = .venv/bin/python bench/moto_server.py
    .venv/bin/python bench/moto_server.py --rounds 9 --requests 1000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys

from miniwdl_fargate import aws

CLIENT = r"""
import resource, sys
import boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
s3.create_bucket(Bucket="bench-moto-server")
s3.put_object(Bucket="bench-moto-server", Key="warm", Body=b"x")
before = resource.getrusage(resource.RUSAGE_SELF)
for i in range(int(sys.argv[2]) // 2):
    s3.put_object(Bucket="bench-moto-server", Key=f"k/{i}", Body=b"x" * 100)
    s3.head_object(Bucket="bench-moto-server", Key=f"k/{i}")
after = resource.getrusage(resource.RUSAGE_SELF)
print(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
"""


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start(kind: str):
    """A server of ``kind`` (``threads_kept``: local mode's; ``moto``: ``ThreadedMotoServer``)."""
    from moto.moto_server import werkzeug_app

    from miniwdl_fargate.local.moto import server

    if kind == "threads_kept":
        return server.start()
    from moto.server import ThreadedMotoServer

    werkzeug_app.DISABLE_GLOBAL_CORS = True
    found = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    found.start()
    return found


def one_round(kind: str, requests: int) -> tuple[float, float]:
    """(server, client) milliseconds of CPU per request."""
    from miniwdl_fargate.local.moto import server as local_server

    found = start(kind)
    host, port = found.get_host_and_port()
    try:
        before = cpu_seconds()
        answer = subprocess.run(
            [sys.executable, "-c", CLIENT, f"http://{host}:{port}", str(requests)],
            capture_output=True, text=True, check=True, env={**os.environ, **aws.FAKE_CREDENTIALS},
        )
        served = cpu_seconds() - before
    finally:
        local_server.stop(found)
    return 1000 * served / requests, 1000 * float(answer.stdout) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each server, in turns")
    parser.add_argument("--requests", type=int, default=600, help="requests a round")
    args = parser.parse_args()
    os.environ.update(aws.FAKE_CREDENTIALS)
    from miniwdl_fargate.local.moto import server

    server.quiet_loggers()
    kinds = ("moto", "threads_kept")
    figures: dict[str, list[tuple[float, float]]] = {kind: [] for kind in kinds}
    for _ in range(args.rounds):
        for kind in kinds:
            figures[kind].append(one_round(kind, args.requests))
    result: dict = {"rounds": args.rounds, "requests": args.requests, "load_average": round(os.getloadavg()[0], 2)}
    print(f"{'server':14s} {'server CPU/request':>20s} {'client CPU/request':>20s}")
    for kind in kinds:
        server_ms = statistics.median(s for s, _ in figures[kind])
        client_ms = statistics.median(c for _, c in figures[kind])
        result[kind] = {"server_ms": round(server_ms, 3), "client_ms": round(client_ms, 3)}
        print(f"{kind:14s} {server_ms:17.3f} ms {client_ms:17.3f} ms")
    result["ratio"] = round(result["threads_kept"]["server_ms"] / result["moto"]["server_ms"], 3)
    print(f"kept threads / moto's: {result['ratio']:.2f} of the server's CPU per request (median of {args.rounds} rounds each)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
