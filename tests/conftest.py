import os
import sys
from pathlib import Path

import botocore.loaders
import botocore.session
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "functions"))
sys.path.insert(0, str(REPO))  # bench.ecs_sim, the simulated ECS endpoint

# never let a test reach a real AWS account
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


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
# mode's moto patches in this process (moto_patches.install, once per process), and in-process
# moto tests that run after them would see patched moto. Inside a tier, the tests marked `long`
# come first (so that, run in parallel, the workers end together), else in pytest's order.
#
# Under pytest-xdist (`make test`: -n N --dist loadgroup --no-loadscope-reorder) the order holds
# in every worker: each worker is its own process with its own session fixtures (its own local
# stack, moto server on a free port, state directory under its own basetemp), and the scheduler
# hands out tests (and groups) in collection order (--no-loadscope-reorder: else it would hand
# out the biggest group first), so each worker runs its share in this order. The containers tier
# is one group, so one worker: one image build and one engine-backed stack for the tier.
TIERS = ("unit", "events", "integration", "local", "containers")
#: the tiers whose tests all run in one worker (xdist_group), named by the tier
GROUPED_TIERS = ("containers",)


def tier_of(item) -> str:
    """The tier of a test: the folder under tests/ it is in."""
    parts = Path(str(item.fspath)).relative_to(REPO / "tests").parts
    return parts[0] if len(parts) > 1 else ""


def run_order(item) -> tuple[int, int]:
    """Where a test runs: its tier's place, then the long tests of the tier first."""
    name = tier_of(item)
    return (TIERS.index(name) if name in TIERS else len(TIERS), 0 if item.get_closest_marker("long") else 1)


# tryfirst: before xdist's own hook reads the xdist_group marks
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    items.sort(key=run_order)  # (a stable sort: the order otherwise stays pytest's)
    for item in items:
        if tier_of(item) in GROUPED_TIERS:
            item.add_marker(pytest.mark.xdist_group(tier_of(item)))
