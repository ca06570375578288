"""``.ci/pytest_rewrite.py`` (run by ``.ci/bytecode`` as `make test` makes .venv) writes the
bytecode pytest reads for a test module, its asserts rewritten, so that no test worker rewrites
the module again. It uses pytest's own functions, which are not a public API: the day pytest no
longer reads what it writes, this fails (`make test` would then only lose the CPU it saved)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

MODULE = """
def test_compares():
    found = 1
    assert found == 2
"""


def test_pytest_reads_the_rewritten_bytecode_written_before_it_and_rewrites_nothing(tmp_path):
    module = tmp_path / "test_sample.py"
    module.write_text(MODULE)
    # (pytest writes what it rewrites only where Python may write bytecode)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    # (named relative to the working folder, as .ci/bytecode names the test modules)
    subprocess.run([sys.executable, str(REPO / ".ci" / "pytest_rewrite.py"), module.name], check=True, env=env, cwd=tmp_path)
    (written,) = (tmp_path / "__pycache__").glob("test_sample.*-pytest-*.pyc")
    before = written.stat()
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--tb=native", str(module)],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )
    # the assert explained as pytest's rewrite explains it, and the code's file the module's path
    # (what tracebacks show)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "AssertionError: assert 1 == 2" in ran.stdout, ran.stdout
    assert f'File "{module}", line 4, in test_compares' in ran.stdout, ran.stdout
    # a module pytest rewrites itself is written to a file of its own, renamed over the old one (a
    # new inode): this one was read, not written again
    after = written.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
