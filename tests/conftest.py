import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "functions"))
sys.path.insert(0, str(REPO))  # bench.ecs_sim, the simulated ECS endpoint

# never let a test reach a real AWS account
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

# The tiers run in this order whatever order they are named in: unit (no AWS), integration (moto
# in this process), then the whole pipeline (local, containers). The local stack installs local
# mode's moto patches in this process (local/moto install, once per process), and in-process
# moto tests that run after them would see patched moto.
TIERS = ("unit", "events", "integration", "local", "containers")


def pytest_collection_modifyitems(session, config, items):
    def tier(item):
        parts = Path(str(item.fspath)).relative_to(REPO / "tests").parts
        return TIERS.index(parts[0]) if parts and parts[0] in TIERS else len(TIERS)

    items.sort(key=tier)  # (a stable sort: the order inside each tier stays pytest's)
