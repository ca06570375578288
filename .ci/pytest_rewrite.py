"""Write pytest's bytecode of the given test modules (their asserts rewritten), as pytest's own
import of each would write it: ``python .ci/pytest_rewrite.py FILE...`` (``.ci/bytecode``).

pytest rewrites the asserts of each test module (``test_*.py``, ``conftest.py``) as it imports
it, and keeps the result beside it (``__pycache__/<name>.<tag>-pytest-<version>.pyc``, checked
against the source's hash). On a clean clone, `make test`'s three workers import every test
module at once, and each rewrote all of them itself: about 3 s of CPU a worker, at the start,
where the three contend for two cores. Written once here, before they start, each reads them.

It uses pytest's own functions (``_pytest.assertion.rewrite``: ``_rewrite_test``, ``_write_pyc``,
not a public API) and does what pytest's import does with them, ``enable_assertion_pass_hook``
off (the project does not set it). Where pytest's module is no longer as this expects, it writes
nothing and says so: each worker then rewrites the modules itself, as before
(tests/unit/test_pytest_rewrite.py tells when the files written here are no longer the ones
pytest reads).
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(paths: list[str]) -> int:
    try:
        from _pytest.assertion import rewrite

        cache_name, write_pyc, rewrite_test = rewrite.PYC_TAIL, rewrite._write_pyc, rewrite._rewrite_test
        cache_dir, make_dirs = rewrite.get_cache_dir, rewrite.try_makedirs
    except (ImportError, AttributeError) as exn:
        print(f".ci/pytest_rewrite.py: pytest's rewrite is not as this script expects ({exn}): "
              "each test worker rewrites the test modules itself", file=sys.stderr)
        return 0

    class Untraced:  # (what _write_pyc's ``state`` is used for: a trace of why a write failed)
        @staticmethod
        def trace(_message: str) -> None:
            pass

    for name in paths:
        # (the code's file name is set to the module's path as pytest reads it: tracebacks name it)
        source = Path(name)
        if not make_dirs(cache_dir(source)):
            continue  # (a folder it cannot write: pytest's import then rewrites it, as before)
        source_hash, code = rewrite_test(source, None)
        write_pyc(Untraced, code, source_hash, cache_dir(source) / (source.name[:-3] + cache_name))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
