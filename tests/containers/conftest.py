"""The containers tier: local mode with a real container engine, on images built locally by
``images.sh`` (no registry is reachable). Skipped, saying why, where no engine works; where
``MINIWDL_FARGATE_REQUIRE_ENGINE=1`` (CI sets it, having set podman up) a missing engine fails."""

import os
import subprocess
from pathlib import Path

import pytest

from miniwdl_fargate.local.containers import ENGINE_ENV, Engine

HERE = Path(__file__).resolve().parent

def _wanted() -> str:
    """The engine this tier asks for: the one named in MINIWDL_FARGATE_LOCAL_ENGINE, else the first
    that works ("none", which the local tier sets for itself, does not apply here)."""
    named = os.environ.get(ENGINE_ENV, "auto")
    return "auto" if named == "none" else named


def _unavailable() -> str | None:
    """Why this tier cannot run here, or None."""
    try:
        engine = Engine.detect({ENGINE_ENV: _wanted()})
    except (RuntimeError, ValueError) as exn:
        return str(exn)
    if engine is None:
        return "no working container engine (podman info / docker info fail); see .ci/run for the setup"
    build = subprocess.run(["bash", str(HERE / "images.sh"), engine.kind], capture_output=True, text=True)
    if build.returncode != 0:
        return f"cannot build the test images with {engine.kind}: {build.stderr.strip()[-300:]}"
    return None


@pytest.fixture(scope="session")
def engine_ready():
    problem = _unavailable()
    if problem is not None:
        if os.environ.get("MINIWDL_FARGATE_REQUIRE_ENGINE") == "1":
            pytest.fail(f"the containers tier must run here, but {problem}")
        pytest.skip(problem)


@pytest.fixture(scope="session")
def stack(engine_ready, tmp_path_factory):
    """The whole pipeline in local mode, WDL tasks in containers (one stack for the tier)."""
    from miniwdl_fargate.local.stack import LocalStack

    saved = os.environ.get(ENGINE_ENV)
    os.environ[ENGINE_ENV] = _wanted()
    try:
        # its own stack name: moto's state is per process, and the local tier's stack may be up in
        # this process too (the local tier runs next, and session fixtures end with the session)
        with LocalStack(state_dir=str(tmp_path_factory.mktemp("containers")), stack_name="miniwdl-fargate-containers") as deployed:
            assert deployed.runtime.engine is not None
            yield deployed
    finally:
        if saved is None:
            os.environ.pop(ENGINE_ENV, None)
