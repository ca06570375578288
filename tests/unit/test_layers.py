"""Which modules know which: the driver, its progress reports, the run report, the settings and
the run's limits read the backend's attempts log and settings, never a backend module; the
backend is loaded by miniwdl, as its plugin, when a run starts tasks (and says then, through
``run_resources``, how the driver releases what it made for the run)."""

import json
import subprocess
import sys

NOT_THE_BACKEND = [
    "miniwdl_fargate.driver", "miniwdl_fargate.progress", "miniwdl_fargate.report.run", "miniwdl_fargate.config",
    "miniwdl_fargate.limits", "miniwdl_fargate.attempts", "miniwdl_fargate.run_resources", "miniwdl_fargate.efs_cleanup",
    "miniwdl_fargate.nfs",
]


def test_importing_the_driver_and_what_it_reads_loads_no_backend_module():
    # (a fresh interpreter, which imports them all: this one has loaded the backend for other tests)
    code = (
        f"import sys, json, {', '.join(NOT_THE_BACKEND)}; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('miniwdl_fargate.backend'))))"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert loaded == []


def test_no_function_of_the_driver_imports_a_backend_module_when_it_runs():
    # (an import inside a function, which the check above cannot see, counts too: `from .backend
    # import x`, `from . import backend`, or a module named in a string, as importlib takes it)
    import ast
    import importlib
    from pathlib import Path

    for name in NOT_THE_BACKEND:
        tree = ast.parse(Path(importlib.import_module(name).__file__).read_text())
        named = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                named += [f"{node.module or ''}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                named += [alias.name for alias in node.names]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("miniwdl_fargate."):
                named.append(node.value)
        assert [m for m in named if "backend" in m.split(".")] == [], name
