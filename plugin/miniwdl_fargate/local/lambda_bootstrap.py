"""One warm Lambda execution environment: ``python -m ... HANDLER RESPONSE_FD``.

Like the Lambda Python runtime, it imports the handler's module once (the init phase) and then
answers invocations one at a time for as long as it lives, keeping module globals between them:
Lambda's Init phase runs once per execution environment, and later invocations reuse it (the
execution environment lifecycle,
https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html). Its working directory and
PYTHONPATH are the unpacked code package.

Protocol (``lambda_runner`` is the other side): each request is one JSON line on stdin,
``{"event": "<payload JSON>", "request_id": "...", "deadline": <epoch seconds>}``; each answer
is one JSON line on RESPONSE_FD, ``{"body": "<result JSON>", "errored": bool}``, written after
stdout and stderr (the function's logs) are flushed. A handler exception answers Lambda's error
shape. A module that fails to import answers that error and the process exits (Lambda discards
an environment whose init failed).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from typing import Any, Callable


class Context:
    """The ``context`` argument of a Python handler (the attributes our handlers read)."""

    def __init__(self, request_id: str, deadline: float) -> None:
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "function")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = os.environ.get("AWS_LAMBDA_FUNCTION_ARN", "")
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = request_id
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def error_body(exn: BaseException) -> str:
    """Lambda's error shape for an exception the handler (or its import) raised."""
    traceback.print_exception(type(exn), exn, exn.__traceback__)
    return json.dumps(
        {
            "errorMessage": str(exn),
            "errorType": exn.__class__.__name__,
            "stackTrace": traceback.format_tb(exn.__traceback__),
        }
    )


def load_handler(handler_name: str) -> Callable[[Any, Context], Any]:
    module_name, func_name = handler_name.rsplit(".", 1)
    sys.path.insert(0, os.getcwd())
    return getattr(importlib.import_module(module_name), func_name)


def invoke(handler: Callable[[Any, Context], Any], request: dict[str, Any]) -> tuple[str, bool]:
    try:
        event = json.loads(request.get("event") or "{}")
        result = handler(event, Context(request["request_id"], request["deadline"]))
        return json.dumps(result), False
    except Exception as exn:
        return error_body(exn), True


def answer(response: Any, body: str, errored: bool) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    response.write(json.dumps({"body": body, "errored": errored}) + "\n")
    response.flush()


def main() -> int:
    handler_name, response_fd = sys.argv[1], int(sys.argv[2])
    response = os.fdopen(response_fd, "w")
    try:
        handler = load_handler(handler_name)
    except Exception as exn:  # the init phase failed: answer the first invocation, then go
        init_error = error_body(exn)
        if sys.stdin.readline():
            answer(response, init_error, True)
        return 1
    for line in sys.stdin:
        body, errored = invoke(handler, json.loads(line))
        answer(response, body, errored)
    return 0


if __name__ == "__main__":
    sys.exit(main())
