"""One builder of a run's execution ARN (runs.execution_arn), as start, cancel and the CLI use it."""

from miniwdl_fargate import runs


def test_the_execution_arn_is_the_state_machines_with_the_run_id():
    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:run"
    assert runs.execution_arn(machine, "hello-1a2b3c4d") == "arn:aws:states:us-east-1:123456789012:execution:run:hello-1a2b3c4d"


def test_only_the_resource_type_is_replaced_whatever_the_names():
    machine = "arn:aws-cn:states:cn-north-1:123456789012:stateMachine:stateMachine"
    assert runs.execution_arn(machine, "a-01234567") == (
        "arn:aws-cn:states:cn-north-1:123456789012:execution:stateMachine:a-01234567"
    )


def test_a_run_id_with_a_dot_names_an_execution_that_cloudwatch_logs_takes():
    """A run name may hold "." (an S3 folder's); an execution name with one is not logged to
    CloudWatch Logs (API_StartExecution): its "." is "_" in the execution's name and ARN."""
    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:run"
    assert runs.execution_name("sample.v2-0123abcd") == "sample_v2-0123abcd"
    assert runs.execution_arn(machine, "sample.v2-0123abcd").endswith(":execution:run:sample_v2-0123abcd")
    assert runs.execution_name("hello-1a2b3c4d") == "hello-1a2b3c4d"
