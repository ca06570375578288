"""Local Lambda keeps execution environments warm, as the Lambda service does: one per function
is started once the stack is deployed, and an invocation reuses an idle one."""

import copy
import json
import re
from pathlib import Path

from miniwdl_fargate import aws
from miniwdl_fargate.local.stack import RUN_PATH_HANDLERS

REPO = Path(__file__).resolve().parents[2]
EVENT = json.loads((REPO / "tests" / "events" / "apigw_post_runs.json").read_text())


def list_runs_event():
    event = copy.deepcopy(EVENT)
    event.update(httpMethod="GET", path="/runs", resource="/runs", queryStringParameters=None, body=None, pathParameters=None)
    event["requestContext"].update(httpMethod="GET", resourcePath="/runs", path="/v1/runs")
    return event


def test_prewarming_gives_every_function_a_warm_environment(stack):
    """The deploy starts one environment for each function a run goes through, in the
    background; environments come and go (a crashed or timed-out one is discarded, as Lambda
    does: earlier tests do that), and prewarming again gives each function that has none a new one."""
    functions = stack.functions()
    assert {f.handler.split(".")[0] for f in functions} >= {"inputs_dropped", "launch_driver", "driver_stopped", "finalize", "api"}
    run_path = stack.run_path_functions()
    assert [f.handler.split(".")[0] for f in run_path] == list(RUN_PATH_HANDLERS)  # (each of them in the template)
    stack.prewarming.join(timeout=120)  # the deploy's, in the background as provisioned concurrency starts
    assert not stack.prewarming.is_alive()
    again = stack.runtime.prewarm_lambdas(functions)
    again.join(timeout=120)
    assert not again.is_alive()
    assert [f.name for f in functions if not stack.runtime.lambdas.warm(f)] == []
    assert stack.runtime.lambdas.workers() >= len(functions)


def test_invocations_one_after_another_share_one_environment(stack):
    name = next(f.name for f in stack.functions() if f.handler.startswith("api."))
    log = Path(stack.state_dir) / "logs" / f"lambda-{name}.log"
    for _ in range(2):
        answer = aws.client("lambda").invoke(FunctionName=name, Payload=json.dumps(list_runs_event()).encode())
        assert json.loads(answer["Payload"].read())["statusCode"] == 200
    environments = re.findall(r"^--- invoke \(.*, environment (\d+)\)$", log.read_text(), re.M)
    assert len(environments) >= 2
    assert environments[-1] == environments[-2]
