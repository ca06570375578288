"""The shape of local mode's seam with moto: every fix names a still-needed test that exists, and
only local/moto/ imports moto."""

import ast
import functools
from pathlib import Path

import pytest

from miniwdl_fargate.local.moto import cfn, fixes

REPO = Path(__file__).resolve().parents[2]
LOCAL = REPO / "plugin" / "miniwdl_fargate" / "local"


@functools.cache  # (one parse of a test module for all the fixes naming a test of it)
def defined_tests(path: Path) -> frozenset[str]:
    tree = ast.parse(path.read_text())
    return frozenset(node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"))


STILL_NEEDED = [(fix.name, fix.still_needed_test) for fix in fixes.FIXES] + [
    (cfn_type, fix.still_needed_test) for cfn_type, fix in cfn.RESOURCE_TYPES.items()
]


@pytest.mark.parametrize("name, test", STILL_NEEDED)
def test_each_fix_names_a_still_needed_test_that_exists(name, test):
    path, _, function = test.partition("::")
    assert function in defined_tests(REPO / path), f"{name}: no {test}"


def test_the_fixes_have_unique_names_and_the_pinned_moto_version():
    import moto

    assert len({fix.name for fix in fixes.FIXES}) == len(fixes.FIXES)
    assert moto.__version__ == fixes.MOTO_VERSION


def moto_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "moto":
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.split(".")[0] == "moto"]
    return found


def test_only_the_seam_knows_moto():
    """Nothing of the package but local/moto/ (with ``ecs_state``, which writes the ECS tasks moto
    created) imports moto: the Lambda and ECS runners get plain values (a ``FunctionSpec``, a
    ``TaskSpec``), and the stack starts moto's server through the seam."""
    package = LOCAL.parent
    imports = {
        str(path.relative_to(package)): moto_imports(path)
        for path in package.rglob("*.py")
        if (LOCAL / "moto") not in path.parents
    }
    assert {name: found for name, found in imports.items() if found} == {}
    assert "local/stack.py" in imports and "local/runtime.py" in imports  # (the walk reaches local/)


@pytest.mark.parametrize("kinds", [
    {"moto_model": "moto.x.models.X", "call": lambda *a: "id"},  # a call is for a type moto has no model of
    {"creation": lambda *a: None},  # a creation replaces moto's model's: it names it
    {"moto_model": "moto.x.models.X", "creation": lambda *a: None, "attributes": lambda m: None},  # two kinds
    {"moto_model": "moto.x.models.X"},  # none
])
def test_a_cfn_fix_is_of_one_kind(kinds):
    with pytest.raises(ValueError, match="a CfnFix is a call"):
        cfn.CfnFix("tests/x.py::test_x", **kinds)


def test_every_cfn_fix_of_a_moto_model_names_one_that_exists():
    for cfn_type, fix in cfn.RESOURCE_TYPES.items():
        if fix.moto_model:
            module, _, name = fix.moto_model.rpartition(".")
            assert hasattr(__import__(module, fromlist=[name]), name), cfn_type
