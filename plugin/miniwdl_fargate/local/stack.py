"""Local mode's AWS: an embedded moto server with this repository's template.yaml deployed in it.

Deployment follows what ``sam package`` + ``sam deploy`` do: local ``CodeUri`` / ``ContentUri`` /
``DefinitionUri`` paths are zipped or uploaded to an artifacts bucket and replaced by s3:// URIs,
aws-sam-translator transforms the template into plain CloudFormation, and moto's CloudFormation
creates the stack.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, Callable

from .. import aws, driver_task
from ..upload import LOCAL_STATE_MARK
from . import heap
from .lambda_runner import FunctionSpec

log = logging.getLogger("miniwdl-fargate.local")

#: the shape of a cached translation (``transform``); a new shape is a new cache
TRANSLATION_FORMAT = "1"
REGION = "us-east-1"
ARTIFACTS_BUCKET = "miniwdl-fargate-local-artifacts"
STACK_NAME = "miniwdl-fargate"
#: the driver's shortest DescribeTasks interval in local mode: a deployment's default
#: (TaskPollSeconds). A task's end is seen at once all the same: the ECS runner wakes the driver's
#: poller for it (``wakeups``: a DescribeTasks of that task alone); the passes at this interval
#: only see tasks start (and anything not woken), and each is a DescribeTasks of every task
#: watched, which moto serializes (at 0.1 s, most of a waiting run's CPU, the stack's and the
#: driver's)
POLL_SECONDS = 0.5
#: the driver's shortest interval between status.json updates in local mode (StatusSeconds'
#: MinValue; a deployment's default is 10 s): `logs --task` and `submit --follow` see a task soon
STATUS_SECONDS = 1
#: the driver's interval between checks of a run's budget in local mode (BudgetCheckSeconds; a
#: deployment's default is 5 s): a run over its budget is stopped within a second
BUDGET_CHECK_SECONDS = 1
#: the longest first wait before the driver tries a RunTask again in local mode (LaunchRetrySeconds;
#: a deployment's default is 1 s, for ECS's throttles and capacity to pass): a quarter, as the state
#: machine's retries (``RETRY_SCALE``)
LAUNCH_RETRY_SECONDS = 0.25
#: what the state machine's Retry intervals are multiplied by in local mode (``moto.hooks``): its
#: definition is the one deployed to AWS (whole seconds, at least 1), whose waits are for AWS's
#: services to recover or a driver slot to free; a local stack's queued run tries for a slot every
#: half second, up to every 15 s, where a deployed one tries every 2 s up to every minute
RETRY_SCALE = 0.25
#: the handler modules of the Lambda functions every run goes through, in the order it reaches
#: them (an S3 drop's submit, the driver's launch, its stop, the run's finalize)
RUN_PATH_HANDLERS = ("inputs_dropped", "launch_driver", "driver_stopped", "finalize")
#: how often a local-mode client looks at its run (``local run``, ``submit --local --follow``) where
#: it cannot watch the stack's count of its changes (``changes``: then only when it changed)
CLIENT_POLL_SECONDS = 0.05
SKIP_DIRS = {"__pycache__", ".venv", ".git", "build", "dist", ".pytest_cache"}


def repo_root() -> Path:
    """The checkout this package was installed from (editable install), else the cwd."""
    here = Path(__file__).resolve().parents[3]
    if (here / "template.yaml").is_file():
        return here
    return Path.cwd()


def zip_directory(path: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
            for name in sorted(files):
                full = Path(root) / name
                zf.write(full, full.relative_to(path).as_posix())
    return buf.getvalue()


class _NoManagedPolicies:
    """aws-sam-translator looks up AWS managed policy ARNs by name; the template names none."""

    def load(self) -> dict[str, str]:
        return {}


def upload_artifact(local: Path, key: str, bucket: str) -> str:
    """Upload one local artifact (a folder is zipped) as ``key``; its s3:// URI."""
    body = zip_directory(local) if local.is_dir() else local.read_bytes()
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=body)
    return f"s3://{bucket}/{key}"


def package(
    template: dict[str, Any], base: Path, bucket: str, artifacts: dict[str, str] | None = None
) -> dict[str, Any]:
    """Upload local artifacts like ``sam package`` and point the template at them; each
    artifact's local path and key go into ``artifacts`` if given."""
    uploaded: dict[str, str] = {}

    def upload(relpath: str, kind: str) -> str:
        if relpath.startswith("s3://"):
            return relpath
        local = (base / relpath).resolve()
        if str(local) in uploaded:
            return uploaded[str(local)]
        if local.is_dir():
            key = f"{kind}/{local.name}.zip"
        elif local.is_file():
            key = f"{kind}/{local.name}"
        else:
            raise FileNotFoundError(f"template.yaml refers to {relpath}, which does not exist under {base}")
        uploaded[str(local)] = upload_artifact(local, key, bucket)
        if artifacts is not None:
            artifacts[str(local)] = key
        return uploaded[str(local)]

    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties", {})
        kind = resource.get("Type")
        if kind == "AWS::Serverless::Function" and isinstance(props.get("CodeUri"), str):
            props["CodeUri"] = upload(props["CodeUri"], "functions")
        elif kind == "AWS::Serverless::LayerVersion" and isinstance(props.get("ContentUri"), str):
            props["ContentUri"] = upload(props["ContentUri"], "layers")
        elif kind == "AWS::Serverless::StateMachine" and isinstance(props.get("DefinitionUri"), str):
            props["DefinitionUri"] = upload(props["DefinitionUri"], "statemachines")
    return template


def template_path(given: str | os.PathLike | None = None) -> Path:
    """The SAM template a local stack deploys: ``given`` (``--template``), else this checkout's."""
    return Path(given) if given else repo_root() / "template.yaml"


def read_template(template_path: Path) -> dict[str, Any]:
    """A SAM template as aws-sam-translator's ``yaml_parse`` reads it (the short forms of the
    intrinsic functions, ``!Ref``, ``!Sub``, ``!GetAtt A.B``, ..., as ``{"Ref": ...}``,
    ``{"Fn::Sub": ...}``, ``{"Fn::GetAtt": ["A", "B"]}``), with the same constructor for those
    tags, on PyYAML's libyaml parser where PyYAML has it
    (https://pyyaml.org/wiki/PyYAMLDocumentation: "CLoader", "CSafeLoader"): this repository's
    template, read as `local up` and `local run` start and at each translation, in 0.04 s of CPU
    where the pure-Python loader ``yaml_parse`` uses took 0.4 s. Unlike ``yaml_parse``, it adds
    nothing to ``yaml.SafeLoader`` (a loader of its own). A template that is not YAML raises
    ``yaml.YAMLError``, as there, its mark naming the file."""
    import yaml
    from samtranslator.yaml_helper import yaml_parse

    if not yaml.__with_libyaml__:
        return yaml_parse(template_path.read_text(encoding="utf-8"))
    with open(template_path, encoding="utf-8") as stream:  # (an error's mark then names the file)
        return yaml.load(stream, Loader=_template_loader())


@functools.cache
def _template_loader() -> Any:
    """CSafeLoader with aws-sam-translator's constructor of the intrinsic functions' tags."""
    import yaml
    from samtranslator.yaml_helper import intrinsics_multi_constructor

    loader = type("TemplateLoader", (yaml.CSafeLoader,), {})
    loader.add_multi_constructor("!", intrinsics_multi_constructor)
    return loader


def parameter_problems(template: dict[str, Any], template_name: str, given: dict[str, str]) -> list[str]:
    """What CloudFormation refuses of ``given`` as the parameters of a stack of ``template``
    (``read_template``'s, named ``template_name``) (CreateStack's ValidationError), which moto
    lets through: a name the template does not declare, and a value
    its declaration does not allow: not a number for ``Type: Number``, not one of
    ``AllowedValues``, not matching ``AllowedPattern``, outside ``MinValue``/``MaxValue`` or
    ``MinLength``/``MaxLength`` (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/parameters-section-structure.html).
    A declaration's ``ConstraintDescription`` says why, where it has one."""
    import difflib
    import math
    import re

    declared = template.get("Parameters") or {}
    problems = []
    for name in given:
        if name not in declared:
            close = difflib.get_close_matches(name, list(declared), n=1)
            hint = f"did you mean {close[0]}?" if close else f"it has {', '.join(declared)}"
            problems.append(f"{name}: not a parameter of {template_name} ({hint})")
    for name, value in given.items():
        spec = declared.get(name)
        if spec is None:
            continue
        why = []
        number = None
        if spec.get("Type") == "Number":  # (an integer or a decimal: not Python's "1_000", " 5" or "inf")
            number = float(value) if re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", value) else math.nan
            if not math.isfinite(number):
                why.append("must be a number")
        if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
            why.append(f"must be one of {', '.join(str(v) for v in spec['AllowedValues'])}")
        # (a CommaDelimitedList's pattern is each item's)
        items = value.split(",") if spec.get("Type") == "CommaDelimitedList" else [value]
        if "AllowedPattern" in spec and not all(re.fullmatch(str(spec["AllowedPattern"]), item) for item in items):
            why.append(f"must match the pattern {spec['AllowedPattern']}")
        if number is not None and math.isfinite(number):
            if "MinValue" in spec and number < float(spec["MinValue"]):
                why.append(f"must be at least {spec['MinValue']}")
            if "MaxValue" in spec and number > float(spec["MaxValue"]):
                why.append(f"must be at most {spec['MaxValue']}")
        if "MinLength" in spec and len(value) < int(spec["MinLength"]):
            why.append(f"must have at least {spec['MinLength']} characters")
        if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
            why.append(f"must have at most {spec['MaxLength']} characters")
        if why:
            said = spec.get("ConstraintDescription") or "; ".join(why)
            problems.append(f"{name}={value}: {said}")
    return problems


def transform(
    template_path: Path, parameters: dict[str, str], bucket: str, cache_dir: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Package and transform like ``sam deploy``. With ``cache_dir``, a translation made before
    from the same template, parameters and translator is reused (the artifacts are uploaded
    again, fresh): aws-sam-translator's import and run are most of a deploy's own work."""
    key = translation_key(template_path, parameters, bucket)
    cached = read_translation(cache_dir, key) if cache_dir else None
    if cached is not None:
        for local, artifact in cached["artifacts"].items():
            upload_artifact(Path(local), artifact, bucket)
        return cached["template"]
    from samtranslator.translator.transform import transform as sam_transform

    artifacts: dict[str, str] = {}
    template = read_template(template_path)
    template = package(template, template_path.parent, bucket, artifacts)
    translated = sam_transform(template, parameters, _NoManagedPolicies())
    if cache_dir:
        write_translation(cache_dir, key, {"artifacts": artifacts, "template": translated})
    return translated


def translation_key(template_path: Path, parameters: dict[str, str], bucket: str) -> str:
    """What a translation depends on: the template's text and folder (its artifacts' paths),
    the parameters, the artifacts bucket and the translator's version."""
    from importlib.metadata import version

    digest = hashlib.sha256()
    for part in (
        TRANSLATION_FORMAT, version("aws-sam-translator"), str(template_path.resolve().parent), bucket,
        json.dumps(parameters, sort_keys=True),
    ):
        digest.update(part.encode() + b"\0")
    digest.update(template_path.read_bytes())
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """Where local mode keeps what outlives a stack: $XDG_CACHE_HOME/miniwdl-fargate/local."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "miniwdl-fargate" / "local"


def read_translation(cache_dir: str | os.PathLike, key: str) -> dict[str, Any] | None:
    """A cached translation whose artifacts all still exist, else None (a miss)."""
    try:
        found = json.loads((Path(cache_dir) / f"sam-{key}.json").read_text())
        if all(Path(local).exists() for local in found["artifacts"]) and isinstance(found["template"], dict):
            return found
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def write_translation(cache_dir: str | os.PathLike, key: str, entry: dict[str, Any]) -> None:
    """Keep a translation (written whole or not at all; a cache that cannot be written is
    skipped), and forget those that can no longer be read (``prune_translations``)."""
    try:
        os.makedirs(cache_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=cache_dir, suffix=".part", delete=False) as out:
            json.dump(entry, out)
        os.replace(out.name, Path(cache_dir) / f"sam-{key}.json")
    except OSError as exn:
        log.warning("could not cache the template's translation in %s: %s", cache_dir, exn)
        return
    prune_translations(cache_dir)


def prune_translations(cache_dir: str | os.PathLike) -> None:
    """Remove the cached translations ``read_translation`` would never take again: one whose
    artifacts are gone (its template's folder removed: each clone of the repository, each test's
    copy of the template, has translations of its own, about 100 KB each) or that is damaged.
    Run at each new translation, which costs far more."""
    for path in Path(cache_dir).glob("sam-*.json"):
        if read_translation(cache_dir, path.name[len("sam-"):-len(".json")]) is None:
            try:
                path.unlink()
            except OSError:  # (removed meanwhile by another stack's prune, or not ours to remove)
                pass


def deploy(
    template_path: Path, stack_name: str, parameters: dict[str, str], cache_dir: str | os.PathLike | None = None
) -> dict[str, str]:
    """Deploy the template into the moto endpoint the environment points at; return its outputs."""
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=ARTIFACTS_BUCKET)
    cfn_template = transform(template_path, parameters, ARTIFACTS_BUCKET, cache_dir)
    cfn = aws.client("cloudformation")
    cfn.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(cfn_template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    deadline = time.monotonic() + 120
    while True:
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        status = stack["StackStatus"]
        if status == "CREATE_COMPLETE":
            break
        if not status.endswith("IN_PROGRESS") or time.monotonic() > deadline:
            events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
            failed = [e for e in events if e.get("ResourceStatus", "").endswith("FAILED")]
            raise RuntimeError(f"local stack {stack_name} ended {status}: {failed[:5]}")
        time.sleep(0.2)
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


#: the file that marks a folder as local mode's state (``--state-dir``): a folder holding files
#: without it is someone else's, which local mode would write over (and a workflow's upload
#: leaves out a folder holding it)
STATE_MARK = LOCAL_STATE_MARK


#: what a local stack keeps in its state folder: a folder holding these alone is one (an earlier
#: stack's, from before ``STATE_MARK``)
STATE_ENTRIES = frozenset({
    "changes", "run-changes", "efs", "ebs", "s3", "logs", "home", "engine", "lambda", "idmapped", "ecs-metadata",
    "pid", "driver-zygote", "python-zygote", "task-zygote",
})


def state_dir_problem(path: str | None, workflow_dir: str | None = None) -> str | None:
    """Why ``path`` cannot be a stack's ``--state-dir`` (None when it can): not a folder, or a
    folder holding files that are not local mode's (its EFS, S3 copies, logs and change counters
    would be written among them, over those of the same names), or ``workflow_dir`` itself,
    whose files are uploaded with the workflow (a folder inside it is left out of the upload)."""
    if not path:
        return None
    if workflow_dir and os.path.realpath(path) == os.path.realpath(workflow_dir):
        # (a folder inside it is left out of the workflow's upload; the folder itself cannot be)
        return ("is the workflow's folder, whose files are uploaded with the workflow: give a folder of its own "
                f"(e.g. {os.path.join(path, 'state')})")
    if not os.path.exists(path):
        return None
    if not os.path.isdir(path):
        return "exists and is not a folder"
    held = [] if os.path.exists(os.path.join(path, STATE_MARK)) else sorted(os.listdir(path))
    if set(held) <= STATE_ENTRIES and os.path.isdir(os.path.join(path, "efs")):  # (a local stack's of before the mark: its own names only, its EFS among them)
        held = []
    if held:
        return (f"holds files that are not local mode's state ({', '.join(held[:3])}{', ...' if held[3:] else ''}): local mode "
                "would write its EFS, S3 copies and logs among them; give a new or empty folder, or one an earlier local stack used")
    return None


class LocalStack:
    """Start moto, install the local runtime, deploy the stack. Use as a context manager."""

    def __init__(
        self,
        state_dir: str | None = None,
        template: str | os.PathLike | None = None,
        stack_name: str = STACK_NAME,
        poll_seconds: float = POLL_SECONDS,
        heartbeat_seconds: int = 90,
        prewarm: bool = True,
        cache_dir: str | os.PathLike | None = None,
        parameters: dict[str, str] | None = None,
        check: Callable[[], None] = lambda: None,
    ) -> None:
        self.state_dir = os.path.abspath(state_dir or tempfile.mkdtemp(prefix="miniwdl-fargate-local-"))
        #: a folder of its own (no ``state_dir`` given): removed at the stop if nothing was kept in it
        self._own_state_dir = not state_dir
        #: called between the start's steps (after moto's imports, after its installation; the
        #: caller checks again once deployed): raises to stop the start there (`local run`'s check
        #: for a Ctrl-C noted meanwhile), and what started is stopped
        self.check = check
        self.template = template_path(template)
        self.stack_name = stack_name
        self.poll_seconds = poll_seconds
        #: a run whose driver dies unnoticed ends this long after (a deployment's default: 900 s)
        self.heartbeat_seconds = heartbeat_seconds
        #: start one warm environment per Lambda function once deployed (as provisioned
        #: concurrency would): their imports overlap with the first run's start
        self.prewarm = prewarm
        self.prewarming: threading.Thread | None = None  # the deploy's background Lambda warm-up
        #: where the template's translation is cached (default ``default_cache_dir()``)
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        #: template parameters over local mode's own (e.g. {"ManagedInstances": "Enabled"})
        self.parameters = dict(parameters or {})
        self.outputs: dict[str, str] = {}
        self.server: Any = None
        self.runtime: Any = None
        self._saved_env: dict[str, str | None] = {}

    @property
    def endpoint(self) -> str:
        host, port = self.server.get_host_and_port()
        return f"http://{host}:{port}"

    def _setenv(self, values: dict[str, str]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def start(self) -> "LocalStack":
        # what the deploy loads (moto, its models, the stack's resources) lives as long as the process
        with heap.load_then_freeze():
            started = self._deploy()
        log.info("local stack deployed in %.1fs: %s", time.monotonic() - started, self.outputs)
        if self.prewarm:
            self.prewarming = self.runtime.prewarm_lambdas(self.run_path_functions())
        return self

    def _deploy(self) -> float:
        """Start moto's server and the runtime, deploy the template; when the deploy began."""
        aws.share_data_loaders()  # (before moto is imported: its EC2 module reads models as it loads)
        from . import moto as moto_seam
        from .moto import server as moto_server
        from .runtime import LocalRuntime

        self.check()

        if not self.template.is_file():
            raise FileNotFoundError(f"no template.yaml at {self.template} (use --template)")
        if problem := state_dir_problem(self.state_dir):
            raise ValueError(f"state folder {self.state_dir}: {problem}")
        os.makedirs(self.state_dir, exist_ok=True)
        Path(self.state_dir, STATE_MARK).touch()
        moto_server.quiet_loggers()
        # known and harmless: SAM's feature-toggle notice
        logging.getLogger("samtranslator").setLevel(logging.ERROR)
        self.server = moto_server.start()
        _, port = self.server.get_host_and_port()
        self._setenv(
            {
                **aws.local_environment(self.endpoint, REGION),
                "MOTO_PORT": str(port),  # Step Functions' service integrations call localhost:$MOTO_PORT
                **moto_server.MOTO_SETTINGS,
            }
        )
        for key in aws.SHARED_CONFIG_VARIABLES:
            if key in os.environ:
                self._saved_env.setdefault(key, os.environ.pop(key))
        aws.reset()
        self.runtime = LocalRuntime(self.state_dir, self.endpoint, REGION)
        self.runtime.retry_scale = RETRY_SCALE
        if self.prewarm:
            # the Lambda environments' and the driver's libraries load while this process imports
            # moto's modules and deploys: a from-scratch `local run` about 0.6 s sooner on two
            # cores than when they loaded after the deploy, while the first run was submitted
            self.runtime.python_zygote.start()
        moto_seam.install(self.runtime)
        self.check()
        moto_server.execute_state_machines(self.endpoint)
        started = time.monotonic()
        # the production defaults otherwise: the stack creates its own VPC, as `sam deploy` does
        self.outputs = deploy(self.template, self.stack_name, self.stack_parameters(), self.cache_dir)
        driver = self.outputs.get("DriverTaskDefinitionArn", "")
        if driver:  # its tasks stay host processes; every other task definition is a WDL task's
            self.runtime.driver_families.add(driver_task.family_of(driver))
        self.runtime.run_schedules()
        return started

    def stack_parameters(self) -> dict[str, str]:
        """The template parameters local mode deploys with: its own, then ``parameters``."""
        return {
            "DriverImage": "local/miniwdl-fargate-driver:latest",  # never pulled: the driver runs as a host process
            "TaskPollSeconds": str(self.poll_seconds),
            "StatusSeconds": str(STATUS_SECONDS),
            "BudgetCheckSeconds": str(BUDGET_CHECK_SECONDS),
            "LaunchRetrySeconds": str(LAUNCH_RETRY_SECONDS),
            "DriverHeartbeatSeconds": str(self.heartbeat_seconds),
            **self.parameters,
        }

    def functions(self) -> list[FunctionSpec]:
        """The stack's Lambda functions, as the Lambda runner takes them."""
        from .moto import hooks

        return hooks.lambda_functions(REGION)

    def run_path_functions(self) -> list[FunctionSpec]:
        """The functions every run goes through (``RUN_PATH_HANDLERS``), in the order it reaches
        them: the ones the deploy starts an environment for ahead of the first run. The others
        (the API's, a run's timeout) start theirs at their first invocation, a cold start as on
        Lambda: prewarmed too, they took about 1 s of CPU from a from-scratch `local run` on
        two cores (its wall time 9.6 -> 9.1 s, three runs each)."""
        by_handler = {f.handler.split(".")[0]: f for f in self.functions()}
        return [by_handler[h] for h in RUN_PATH_HANDLERS if h in by_handler]

    def write_connection(self, path: str | os.PathLike) -> Path:
        """What `miniwdl-fargate ... --local` needs to reach this stack (client.connect)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        info = {
            "endpoint": self.endpoint, "region": REGION, "stack_name": self.stack_name, "outputs": self.outputs,
            "state_dir": self.state_dir, "pid": os.getpid(),
        }
        tmp = target.with_suffix(".part")
        tmp.write_text(json.dumps(info, indent=2))
        tmp.replace(target)
        return target

    def stop(self) -> None:
        if self.runtime is not None:
            self.runtime.shutdown()
        if self.server is not None:
            from .moto import server as moto_server

            moto_server.stop(self.server)
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        aws.reset()
        if self._own_state_dir:  # (a stack that never got as far as keeping anything leaves no empty folder behind)
            try:
                os.rmdir(self.state_dir)
            except OSError:  # (not empty: its EFS, logs and results stay for the user)
                pass

    def __enter__(self) -> "LocalStack":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.stop()
