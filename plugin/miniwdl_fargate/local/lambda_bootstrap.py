"""Runs one Lambda invocation in this (fresh) process: ``python -m ... HANDLER RESULT_PATH``.

The event arrives on stdin; the handler's return value (or the error, in Lambda's error shape) is
written to RESULT_PATH. stdout/stderr are the function's logs. The working directory and
PYTHONPATH are the unpacked code package, as in the Lambda Python runtime.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
import uuid


class Context:
    def __init__(self) -> None:
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "function")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = os.environ.get("AWS_LAMBDA_FUNCTION_ARN", "")
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = self.aws_request_id
        self._deadline = time.time() + 900

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def main() -> int:
    handler_name, result_path = sys.argv[1], sys.argv[2]
    event = json.loads(sys.stdin.read() or "{}")
    status = 0
    try:
        module_name, func_name = handler_name.rsplit(".", 1)
        sys.path.insert(0, os.getcwd())
        handler = getattr(importlib.import_module(module_name), func_name)
        result = handler(event, Context())
        body = json.dumps(result)
    except Exception as exn:
        traceback.print_exc()
        body = json.dumps(
            {
                "errorMessage": str(exn),
                "errorType": exn.__class__.__name__,
                "stackTrace": traceback.format_tb(exn.__traceback__),
            }
        )
        status = 1
    with open(result_path, "w") as outfile:
        outfile.write(body)
    return status


if __name__ == "__main__":
    sys.exit(main())
