"""A failed run's error.json as `submit --follow`, `status` and `local run` print it: without its
provenance (every task of the run and its image), which stays in the document."""

import json

from miniwdl_fargate import cli, client


def test_a_failed_runs_error_is_printed_without_its_provenance(capsys):
    tasks = [{"call": f"call-work-{i}", "image": "ubuntu:22.04", "digest": "sha256:" + "a" * 64} for i in range(500)]
    error = {"status": "FAILED", "error": "RunFailed", "message": "call-work-250 failed with exit status 3",
             "failed_task": {"task": "call-work-250", "exit_status": 3, "stderr_tail": ["boom"]},
             "provenance": {"workflow": {"sha256": "b" * 64}, "tasks": tasks}}
    doc = {"run_id": "big-0123abcd", "status": "FAILED", "error": error,
           "error_json": "s3://runs/runs/big/results/big-0123abcd/error.json"}
    assert cli._finish(client, doc) == 1
    shown = json.loads(capsys.readouterr().err)
    assert shown["failed_task"] == error["failed_task"] and shown["message"] == error["message"]
    assert shown["provenance"] == "(every task and image: in s3://runs/runs/big/results/big-0123abcd/error.json)"
    assert "provenance" in error and len(error["provenance"]["tasks"]) == 500  # (the document itself keeps it)
    assert client.shown_error({"error": "x"}) == {"error": "x"}
