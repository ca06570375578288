"""miniwdl-fargate: run WDL workflows on AWS Fargate with zero idle cost.

- ``backend``: miniwdl container backends (``aws_fargate`` and ``host_process``)
- ``driver``: the entry point of the driver task (fetch, ``miniwdl run``, upload)
- ``pipeline``: the logic behind the Lambda handlers in ``functions/``
- ``local``: local mode (an embedded moto server running this repository's template.yaml)
"""

__version__ = "0.1.0"
