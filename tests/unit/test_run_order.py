"""The order tests run in (tests/conftest.py): tier by tier, a tier's long tests first, and the
containers tier as one xdist group, whatever order pytest collected them in."""

from pathlib import Path

import pytest

from tests.conftest import REPO, pytest_collection_modifyitems

TESTS = Path(REPO) / "tests"


class Item:
    """What the hook reads of a collected test: its file and its marks."""

    def __init__(self, path: str, *marks: str) -> None:
        self.fspath = TESTS / path
        self.marks = [getattr(pytest.mark, name) for name in marks]

    def get_closest_marker(self, name):
        return next((m.mark for m in self.marks if m.name == name), None)

    def add_marker(self, marker):
        self.marks.append(marker)

    def __repr__(self) -> str:
        return str(self.fspath.relative_to(TESTS))


def ordered(*items: Item) -> list[str]:
    collected = list(items)
    pytest_collection_modifyitems(None, None, collected)
    return [repr(item) for item in collected]


def test_tiers_run_in_order_and_a_tiers_long_tests_first():
    assert ordered(
        Item("containers/test_a.py"), Item("local/test_b.py"), Item("local/test_a.py"),
        Item("local/test_c.py", "long"), Item("integration/test_z.py"), Item("unit/test_y.py"),
        Item("integration/test_long.py", "long"), Item("test_top.py"), Item("events/test_e.py"),
    ) == [
        "unit/test_y.py", "events/test_e.py", "integration/test_long.py", "integration/test_z.py",
        "local/test_c.py", "local/test_b.py", "local/test_a.py", "containers/test_a.py", "test_top.py",
    ]


def test_the_containers_tier_is_one_xdist_group_and_the_others_are_not():
    containers, local = Item("containers/test_a.py"), Item("local/test_a.py")
    ordered(containers, local)
    group = containers.get_closest_marker("xdist_group")
    assert group is not None and group.args == ("containers",)
    assert local.get_closest_marker("xdist_group") is None
