import os
import sys
from pathlib import Path

import botocore.loaders
import botocore.session
import pytest

from miniwdl_fargate.local.stack import MOTO_SETTINGS

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "functions"))
sys.path.insert(0, str(REPO))  # bench.ecs_sim, the simulated ECS endpoint

# never let a test reach a real AWS account
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
# moto as local mode runs it (no default AMIs: local/stack.py MOTO_SETTINGS), in-process moto too
for _key, _value in MOTO_SETTINGS.items():
    os.environ.setdefault(_key, _value)


class _SearchPaths(list):
    """A loader's search paths that take each folder once: boto3 appends its data folder to the
    loader of every session it makes, and here they all share one loader."""

    def append(self, path) -> None:
        if path not in self:
            super().append(path)


def share_botocore_loaders() -> None:
    """Let every botocore session in the test process share one data loader, so that each service
    model (and endpoints.json) is read and parsed from JSON once per process rather than once per
    session. The tests make a new session for nearly every test (aws.reset() when moto starts or
    stops), and parsing the models was a third of the integration tier's time. A loader caches
    what it loaded and hands out the same objects every time, which is what one session already
    does with its own loader; the product code is not changed (each Lambda, driver and CLI process
    of local mode still has its own)."""
    loaders = {}

    def create_loader(search_path_string=None):
        """botocore.loaders.create_loader, once per AWS_DATA_PATH."""
        if search_path_string not in loaders:
            extra = [os.path.expanduser(os.path.expandvars(p)) for p in (search_path_string or "").split(os.pathsep) if p]
            # (the Loader keeps the list it is given, and adds botocore's own folders to it)
            loaders[search_path_string] = botocore.loaders.Loader(extra_search_paths=_SearchPaths(extra))
        return loaders[search_path_string]

    botocore.session.create_loader = create_loader


share_botocore_loaders()

# The tiers run in this order whatever order they are named in: unit (no AWS), integration (moto
# in this process), then the whole pipeline (local, containers). The local stack installs local
# mode's moto patches in this process (local/moto install, once per process), and in-process
# moto tests that run after them would see patched moto. Inside a tier, the tests marked `long`
# come first (so that, run in parallel, the workers end together), else in pytest's order.
TIERS = ("unit", "events", "integration", "local", "containers")

# Under pytest-xdist (`make test`: -n N) each worker is its own process with its own session
# fixtures (its own local stack, moto server on a free port, state directory under its own
# basetemp). TierScheduling below hands out the tests in collection order (so each worker runs its
# share in the order above), each test on its own but for these, which run in one worker, whole:
#   - the containers tier (one image build, one engine-backed stack for the tier),
#   - a module whose module-scoped fixture is a whole run, or a preloaded process (set up once, not
#     once per worker: a worker tears a module's fixtures down whenever its next test is another's).
ONE_WORKER = ("tests/containers/", "tests/local/test_client.py", "tests/unit/test_driver_zygote.py")


def tier_of(item) -> str:
    """The tier of a test: the folder under tests/ it is in."""
    parts = Path(str(item.fspath)).relative_to(REPO / "tests").parts
    return parts[0] if len(parts) > 1 else ""


def run_order(item) -> tuple[int, int]:
    """Where a test runs: its tier's place, then the long tests of the tier first."""
    name = tier_of(item)
    return (TIERS.index(name) if name in TIERS else len(TIERS), 0 if item.get_closest_marker("long") else 1)


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=run_order)  # (a stable sort: the order otherwise stays pytest's)


def work_unit(nodeid: str) -> str:
    """What xdist hands to a worker as one: the test, or the ONE_WORKER prefix it is under."""
    return next((prefix for prefix in ONE_WORKER if nodeid.startswith(prefix)), nodeid)


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
