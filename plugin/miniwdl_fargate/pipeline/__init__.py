"""The logic behind the Lambda handlers in ``functions/``: plain functions over boto3 clients from
``miniwdl_fargate.aws``. Handlers only parse their event and call these."""
