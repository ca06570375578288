import functools
import gc
import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from miniwdl_fargate import aws
from miniwdl_fargate.local import heap
from miniwdl_fargate.local.moto.server import MOTO_SETTINGS

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "functions"))
sys.path.insert(0, str(REPO))  # bench.ecs_sim, the simulated ECS endpoint

# never let a test reach a real AWS account: fake credentials over any the machine has
os.environ.update(aws.FAKE_CREDENTIALS)
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
# moto as local mode runs it (no default AMIs: local/moto/server.py MOTO_SETTINGS), in-process moto too
for _key, _value in MOTO_SETTINGS.items():
    os.environ.setdefault(_key, _value)


# every botocore session in the test process shares one data loader: the tests make a new session
# for nearly every test (aws.reset() when moto starts or stops), and parsing the service models
# again each time was a third of the integration tier's time (the product code is not changed:
# each Lambda, driver and CLI process of local mode has its own, shared only by its fork server)
aws.share_data_loaders()

# The tiers run in this order whatever order they are named in: unit (no AWS), integration (moto
# in this process), browser (the run report in headless Chromium), then the whole pipeline
# (containers, local). A local stack installs local mode's moto patches in this process
# (local/moto install, once per process), and in-process moto tests that run after them would see
# patched moto. The containers tier (one worker's, whole) comes before the local tier so that the
# other workers' local tests run beside it, not after it with one worker busy. Inside a tier, the
# tests marked `long` come first (so that, run in parallel, the workers end together), else in
# pytest's order.
TIERS = ("unit", "events", "integration", "browser", "containers", "local")

# Under pytest-xdist (`make test`: -n N) each worker is its own process with its own session
# fixtures (its own local stack, moto server on a free port, state directory under its own
# basetemp). TierScheduling below hands out the tests in collection order (so each worker runs its
# share in the order above), each test on its own but for these, which run in one worker, whole:
#   - the containers tier (one image build, one engine-backed stack for the tier),
#   - a module whose module-scoped fixture is a whole run, a preloaded process or a browser (set up
#     once, not once per worker: a worker tears a module's fixtures down whenever its next test is another's),
#   - test_timeouts.py, whose two tests each wait out a timer of about 10 s (long: first in their
#     tier): on one worker one after the other, the other workers compute meanwhile, where on two
#     workers at once (the third in the containers tier, waiting on its engine) they left the machine
#     two-thirds idle for seconds (about 11 of a run's 50 idle core-seconds, measured with vmstat).
ONE_WORKER = (
    "tests/containers/", "tests/local/test_client.py", "tests/unit/test_driver_zygote.py", "tests/unit/test_python_zygote.py",
    "tests/browser/", "tests/local/test_timeouts.py",
)


# Modules whose tests mostly wait (a simulated ECS's task times and polls, Step Functions timers
# and retry intervals) rather than compute. A tier's are one work unit (work_unit), first in the
# tier: one worker runs them one after another while the others compute. Spread one at a time
# between the other tests, each worker still took one whenever it came, and the short tests
# between them went by so fast that the three workers often waited at once, the machine idle
# (measured with /proc/stat each second through a make test: about 30 idle core-seconds, 23-26
# with one unit). Run in name order, they had left the machine idle for a third of the integration tier.
WAITING = (
    "tests/integration/test_beyond_fargate.py", "tests/integration/test_ecs_semantics_sim.py",
    "tests/integration/test_fargate_backend.py", "tests/integration/test_fargate_sim.py",
    "tests/integration/test_launcher.py", "tests/integration/test_moto_patches.py", "tests/integration/test_oom_retry.py",
    "tests/local/test_faults.py", "tests/local/test_timeouts.py",
)


@functools.cache  # (one look per test module, not per test: thousands of tests, a few hundred modules)
def _module_path(fspath: str) -> str:
    """A test module's path in the repository (``tests/<tier>/test_x.py``)."""
    return Path(fspath).relative_to(REPO).as_posix()


def tier_of(item) -> str:
    """The tier of a test: the folder under tests/ it is in."""
    parts = _module_path(str(item.fspath)).split("/")[1:]
    return parts[0] if len(parts) > 1 else ""


def run_order(item) -> tuple[int, int]:
    """Where a test runs: its tier's place, then the long tests of the tier first."""
    name = tier_of(item)
    return (TIERS.index(name) if name in TIERS else len(TIERS), 0 if item.get_closest_marker("long") else 1)


def waits(item) -> bool:
    return _module_path(str(item.fspath)) in WAITING


def waiting_first(items: list) -> list:
    """``items`` (in ``run_order``: a tier's long tests first) with each tier's WAITING tests first
    in it, in that order: the tier's first work unit (``work_unit``), which a worker takes as the
    tier begins."""
    ordered = []
    for _, tier in itertools.groupby(items, key=tier_of):
        tier = list(tier)
        ordered += [item for item in tier if waits(item)] + [item for item in tier if not waits(item)]
    return ordered


#: the collector's thresholds in a test process once its tests are collected: a young collection
#: after 20,000 new objects, not 700 (``gc.set_threshold``; the older generations' as Python's)
GC_THRESHOLDS = (20_000, 10, 10)


@pytest.hookimpl(hookwrapper=True)
def pytest_collection(session):
    """The test modules, and what they import, load for the whole session: with the garbage
    collector off, then frozen (``local/heap``, as local mode's long-lived processes do); then the
    collector runs less often (``GC_THRESHOLDS``). The tests make objects by the million (moto's
    backends, botocore's clients and models), most of them short-lived: measured with
    ``gc.callbacks`` in the integration tier's workers, the collector took 12 s of each one's
    CPU (21 full passes of about 0.5 s), 9 s with the modules frozen, 4 s with the thresholds
    too; the tier's CPU 201 -> 174 s. (New interpreters the tests start keep Python's own; a child
    a test forks inherits these.)"""
    with heap.load_then_freeze():
        yield
    gc.set_threshold(*GC_THRESHOLDS)


@pytest.fixture(autouse=True)
def no_poller_outlives_its_test():
    """(``tests/pollers.py``; the integration tier's AWS fixtures stop theirs sooner, while their
    AWS still answers.)"""
    yield
    from tests.pollers import pollers_idle

    pollers_idle()


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=run_order)  # (a stable sort: the order otherwise stays pytest's)
    items[:] = waiting_first(items)


def work_unit(nodeid: str) -> str:
    """What xdist hands to a worker as one: the ONE_WORKER prefix the test is under, or all the
    WAITING tests of its tier, or the test."""
    found = next((prefix for prefix in ONE_WORKER if nodeid.startswith(prefix)), None)
    if found is not None:
        return found
    module = nodeid.split("::", 1)[0]
    if module in WAITING:
        return f"the waiting tests of {module.split('/')[1]}"
    return nodeid


try:
    from xdist.scheduler import LoadScopeScheduling
except ImportError:  # (pytest-xdist is in requirements-dev.txt; without it the tests run in one process)
    LoadScopeScheduling = object


class TierScheduling(LoadScopeScheduling):
    """xdist's scope scheduling with work_unit as the scope, handed out in collection order (xdist
    would otherwise hand out the biggest scopes first: --loadscope-reorder, its default).
    (Not xdist's own `--dist loadgroup`: it groups by rewriting item._nodeid, which pytest 9 no
    longer reads.)"""

    def __init__(self, config, log=None) -> None:
        config.option.loadscopereorder = False
        super().__init__(config, log)

    def _split_scope(self, nodeid: str) -> str:
        return work_unit(nodeid)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """TierScheduling for `-n N` (--dist load, xdist's default); another --dist asked for stays xdist's."""
    if config.getvalue("dist") == "load":
        return TierScheduling(config, log)
    return None


# The tests leave the checkout and the machine as they found them. A file that a test, or what it
# runs (a WDL task, a Lambda, a container engine), writes into the checkout's own folders fails the
# session, named (podman's container monitor once dropped an "oom" file at the top: it ran in the
# folder local mode was started in); only files new since the session began count, a developer's
# own are left alone. So does a process still running once every test and fixture is done whose
# command line, working directory or environment names the session's temporary folder, where
# every stack's state is: a driver, a task, a Lambda environment, a fork server (a driver left by
# a Ctrl-C once polled a stack that was gone for an hour); it is killed once named.
UNTRACKED = pytest.StashKey[set]()
BASETEMP = pytest.StashKey[str]()
#: how long the processes a session started get to end after its last fixture
PROCESS_END_SECONDS = 30


def untracked_files() -> set[str] | None:
    """The checkout's untracked files that git does not ignore; None outside a git checkout."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=all"],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return {line[3:] for line in proc.stdout.splitlines() if line.startswith("?? ")}


def say_left_behind(session, said: str) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_line(said, red=True, bold=True)
    else:
        print(said, file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_sessionstart(session):
    if hasattr(session.config, "workerinput"):  # (the controller only, under xdist)
        return
    found = untracked_files()
    if found is not None:
        session.config.stash[UNTRACKED] = found
    session.config.stash[BASETEMP] = str(session.config._tmp_path_factory.getbasetemp())


@pytest.hookimpl(trylast=True)  # (after the session's fixtures are torn down, and xdist's workers are done)
def pytest_sessionfinish(session, exitstatus):
    if hasattr(session.config, "workerinput"):
        return
    before = session.config.stash.get(UNTRACKED, None)
    if before is not None:
        left = sorted((untracked_files() or set()) - before)
        if left:
            say_left_behind(session, f"the tests left {len(left)} new file(s) in the checkout {REPO}: " + ", ".join(left[:20]))
    basetemp = session.config.stash.get(BASETEMP, None)
    if basetemp:
        from tests.processes import processes_naming  # (importable once REPO is on sys.path, above)
        from tests.waiting import wait_for

        try:
            wait_for(lambda: not processes_naming(basetemp), PROCESS_END_SECONDS, interval=0.2)
            running = {}
        except AssertionError:
            running = processes_naming(basetemp)
        if running:
            say_left_behind(session, f"the tests left {len(running)} process(es) running, each naming {basetemp} "
                            "(now killed): " + "; ".join(f"{pid}: {cmd}" for pid, cmd in sorted(running.items())[:10]))
            for pid in running:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
