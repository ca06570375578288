"""What a WDL document runs: its workflow, or else its only task, or the task named (as ``miniwdl
run`` picks it, ``--task``).

One rule for every place that needs it: the submit step's validation, the CLI's upload, and the
driver (staging inputs, collecting outputs).
"""

from __future__ import annotations

from typing import Union

import WDL

Target = Union[WDL.Tree.Workflow, WDL.Tree.Task]


class NoTarget(ValueError):
    """The document has no workflow and not exactly one task, or no task of the name asked for:
    nothing to run."""


def find(doc: WDL.Tree.Document, task: str | None = None) -> Target | None:
    """The document's workflow, else its only task; with ``task`` (``miniwdl run --task``, the
    run option ``task``), the task of that name, whatever else the document has. None when there
    is no such thing."""
    if task:
        return next((t for t in doc.tasks if t.name == task), None)
    if doc.workflow is not None:
        return doc.workflow
    if len(doc.tasks) == 1:
        return doc.tasks[0]
    return None


def require(doc: WDL.Tree.Document, task: str | None = None) -> Target:
    """``find``, or NoTarget saying why there is nothing to run."""
    found = find(doc, task)
    if found is None:
        names = ", ".join(t.name for t in doc.tasks) or "none"
        if task:
            raise NoTarget(f"no task {task!r} in the document (its tasks: {names})")
        if not doc.tasks:
            raise NoTarget("no workflow to run: the document has no workflow and no task")
        raise NoTarget(
            f"no workflow to run: the document has no workflow and {len(doc.tasks)} tasks ({names}): "
            "name the one to run (--task NAME, or the run option task)"
        )
    return found
