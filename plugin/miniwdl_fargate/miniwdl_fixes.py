"""The one place this package changes miniwdl's own behaviour (pinned: miniwdl 1.16.0).

``plugins_found_once``: miniwdl's ``run_local_task`` looks up its task plugins for every task
(``config.load_plugins(cfg, "task")``, WDL/runtime/task.py), and each look-up reads the entry
points of every installed distribution (``importlib.metadata.entry_points``). In a 10,000-task
scatter that was nearly half of the driver's CPU (bench/fargate_scale.py, profiled with py-spy).
The fix keeps what ``load_plugins`` found, by group and by the ``[plugins]`` patterns that chose
them: the installed distributions do not change while a driver runs. No upstream issue yet;
``tests/unit/test_miniwdl_fixes.py`` checks the plugins found are the same.

``inputs_stay_read_only``: after each task, miniwdl's ``run_local_task`` adds owner and group
read/write bits to every file of the task's run directory (``chmod_R_plus(run_dir,
file_bits=0o660, dir_bits=0o770)``, WDL/runtime/task.py), so that downstream tasks can read its
outputs. Under miniwdl's Docker backend the inputs are bind mounts made inside the container, so
the run directory holds none of them. Here they are hard links in ``work/_miniwdl_inputs``
(``BaseTaskContainer.link_input_files``) sharing their inode with the staged copy every other task
and later run links to, and which ``read_only`` took the write bits off: miniwdl's chmod gave them
back, and a task starting after another had finished could change everyone's input (seen in
tests/local/test_task_view.py). The fix leaves files under a ``_miniwdl_inputs`` folder as they
are; everything else is chmod-ed as miniwdl does. No upstream issue (miniwdl's own backends never
hard-link inputs into the run directory); ``tests/unit/test_miniwdl_fixes.py`` fails when
miniwdl stops doing this, and the fix can go.

``workflow_loaded_once``: the driver reads the workflow's document (its inputs' types to stage
them, its outputs' to upload them), and ``miniwdl run`` (``WDL.CLI.runner``) loads it again: a
parse and a typecheck of the workflow and each of its imports, about a tenth of a hello run's
driver CPU and seconds for a workflow of many imports. While the driver runs miniwdl, the
runner's load of the run's workflow answers the document the driver loaded (or, if it had not
yet, the one miniwdl loads is kept for the driver). miniwdl's runner offers no way to pass a loaded
document (no upstream issue); ``tests/unit/test_miniwdl_fixes.py`` fails when ``WDL.CLI.runner``
no longer loads through ``WDL.CLI.load``.
"""

from __future__ import annotations

import contextlib
import os
import threading

from typing import Any, Callable, Iterable, Iterator

import WDL
import WDL.CLI
import WDL.runtime.config
import WDL.runtime.task
from WDL._util import chmod_R_plus

INPUTS_FOLDER = "_miniwdl_inputs"
_installed = threading.Lock()
_done = False
_plugins_patched = False
_miniwdl_load_plugins = WDL.runtime.config.load_plugins
#: (group, enable patterns, disable patterns) -> what miniwdl's load_plugins found
_found: dict[tuple[str, tuple[str, ...], tuple[str, ...]], list[tuple[str, Callable[..., Any]]]] = {}


def chmod_R_plus_but_inputs(path: str, file_bits: int = 0, dir_bits: int = 0) -> None:
    """miniwdl's ``chmod_R_plus``, leaving alone every ``_miniwdl_inputs`` folder and what it holds."""
    if os.path.basename(os.path.normpath(path)) == INPUTS_FOLDER:
        return
    if not os.path.isdir(path) or os.path.islink(path):
        chmod_R_plus(path, file_bits, dir_bits)
        return
    os.chmod(path, (os.stat(path).st_mode & 0o7777) | dir_bits)
    for entry in os.scandir(path):
        if entry.is_symlink():
            continue
        if entry.is_dir():
            chmod_R_plus_but_inputs(entry.path, file_bits, dir_bits)
        elif entry.name != INPUTS_FOLDER:
            os.chmod(entry.path, (entry.stat().st_mode & 0o7777) | file_bits)


def inputs_stay_read_only() -> None:
    """Make miniwdl's task runner use ``chmod_R_plus_but_inputs`` (once per process)."""
    global _done
    with _installed:
        if not _done:
            WDL.runtime.task.chmod_R_plus = chmod_R_plus_but_inputs  # type: ignore[attr-defined]
            _done = True


def load_plugins_once(cfg: WDL.runtime.config.Loader, group: str) -> Iterable[tuple[str, Callable[..., Any]]]:
    """miniwdl's ``config.load_plugins``, looked up once per group and ``[plugins]`` patterns."""
    key = (group, tuple(cfg["plugins"].get_list("enable_patterns")), tuple(cfg["plugins"].get_list("disable_patterns")))
    found = _found.get(key)
    if found is None:
        found = _found[key] = list(_miniwdl_load_plugins(cfg, group))
    return iter(found)


def plugins_found_once() -> None:
    """Make miniwdl look its plugins up once per process (``load_plugins_once``)."""
    global _plugins_patched
    with _installed:
        if not _plugins_patched:
            WDL.runtime.config.load_plugins = load_plugins_once  # type: ignore[assignment]
            _plugins_patched = True


@contextlib.contextmanager
def workflow_loaded_once(
    uri: str, check_quant: bool, loaded: Callable[[], WDL.Tree.Document | None], keep: Callable[[WDL.Tree.Document], None],
) -> Iterator[None]:
    """Within the block, miniwdl's CLI loading ``uri`` (no import path, the same ``check_quant``)
    gets the document ``loaded()`` answers, if any; else it loads it as it would and hands it to
    ``keep``. Any other load is miniwdl's own. For the one thread that runs miniwdl's ``runner``."""
    own = WDL.CLI.load
    expected_quant = check_quant  # (``load``'s own check_quant is the caller's)

    def load(source: str, path: list[str] | None = None, check_quant: bool = True, **options: Any) -> WDL.Tree.Document:
        if source != uri or path or check_quant != expected_quant:
            return own(source, path, check_quant=check_quant, **options)
        document = loaded()
        if document is None:
            document = own(source, path, check_quant=check_quant, **options)
            keep(document)
        return document

    WDL.CLI.load = load  # type: ignore[assignment]
    try:
        yield
    finally:
        # (one block at a time in a process: a driver runs one miniwdl; else one ending after the other
        # would leave a load of another run's document in place)
        assert WDL.CLI.load is load, "workflow_loaded_once blocks overlapped"
        WDL.CLI.load = own  # type: ignore[assignment]
