"""The order tests run in (tests/conftest.py): tier by tier, a tier's long tests first, whatever
order pytest collected them in; and what xdist hands a worker as one."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import REPO, TierScheduling, pytest_collection_modifyitems, work_unit

TESTS = Path(REPO) / "tests"


class Item:
    """What the hook reads of a collected test: its file, its marks and its fixtures' scopes
    (``scope``: one fixture of that scope, as pytest's FixtureDef gives it)."""

    def __init__(self, path: str, *marks: str, scope: str = "function") -> None:
        self.fspath = TESTS / path
        self.marks = [getattr(pytest.mark, name) for name in marks]
        self._fixtureinfo = SimpleNamespace(name2fixturedefs={"a_fixture": (SimpleNamespace(scope=scope),)})

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
        Item("browser/test_r.py"),
    ) == [
        "unit/test_y.py", "events/test_e.py", "integration/test_long.py", "integration/test_z.py",
        "browser/test_r.py", "containers/test_a.py", "local/test_c.py", "local/test_b.py", "local/test_a.py", "test_top.py",
    ]


def test_the_containers_tier_and_the_client_module_are_one_work_unit_each_and_other_tests_their_own():
    assert work_unit("tests/containers/test_runner.py::test_a") == "tests/containers/"
    assert work_unit("tests/containers/test_workflows.py::test_b[x]") == "tests/containers/"
    assert work_unit("tests/local/test_client.py::test_status_and_list") == "tests/local/test_client.py"
    # (one driver zygote for the module, not one per worker that gets one of its tests)
    assert work_unit("tests/unit/test_driver_zygote.py::test_a_forked_job_reports_its_exit_code") == "tests/unit/test_driver_zygote.py"
    assert work_unit("tests/browser/test_report_browser.py::test_x") == "tests/browser/"  # (one browser)
    assert work_unit("tests/local/test_cli.py::test_local_run") == "tests/local/test_cli.py::test_local_run"
    assert work_unit("tests/integration/test_status.py::test_x") == "tests/integration/test_status.py::test_x"


class Config:
    class option:
        loadscopereorder = True

    def getvalue(self, name):
        return {"dist": "load", "tx": ["2*popen"]}.get(name)


def test_the_scheduler_keeps_the_collection_order_of_work_units():
    config = Config()
    scheduler = TierScheduling(config)
    assert config.option.loadscopereorder is False  # (xdist's default hands out the biggest first)
    assert scheduler._split_scope("tests/containers/test_runner.py::test_a") == "tests/containers/"


def test_a_tiers_waiting_tests_come_first_in_it_its_long_ones_first_of_all(monkeypatch):
    import tests.conftest as conftest

    monkeypatch.setattr(conftest, "WAITING", ("tests/integration/test_w.py", "tests/local/test_w.py", "tests/local/test_v.py"))
    assert ordered(
        Item("local/test_a.py", "long"), Item("integration/test_b.py"), Item("local/test_w.py"), Item("integration/test_w.py"),
        Item("local/test_v.py", "long"), Item("local/test_b.py"), Item("unit/test_u.py"), Item("integration/test_w.py", "long"),
    ) == [
        "unit/test_u.py", "integration/test_w.py", "integration/test_w.py", "integration/test_b.py",
        "local/test_v.py", "local/test_w.py", "local/test_a.py", "local/test_b.py",
    ]


def test_a_tiers_waiting_tests_are_one_work_unit_for_one_worker(monkeypatch):
    """While one worker waits through them, one after another, the others compute."""
    import tests.conftest as conftest

    monkeypatch.setattr(conftest, "WAITING", ("tests/integration/test_w.py", "tests/integration/test_v.py", "tests/local/test_w.py"))
    assert work_unit("tests/integration/test_w.py::test_a") == work_unit("tests/integration/test_v.py::test_b[x]")
    assert work_unit("tests/integration/test_w.py::test_a") != work_unit("tests/local/test_w.py::test_a")
    assert work_unit("tests/integration/test_x.py::test_a") == "tests/integration/test_x.py::test_a"
