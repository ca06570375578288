"""What a WDL document runs: its workflow, or else its only task (as ``miniwdl run`` picks it).

One rule for every place that needs it: the submit step's validation, the CLI's upload, and the
driver (staging inputs, collecting outputs).
"""

from __future__ import annotations

from typing import Union

import WDL

Target = Union[WDL.Tree.Workflow, WDL.Tree.Task]


class NoTarget(ValueError):
    """The document has no workflow and not exactly one task: nothing to run."""


def find(doc: WDL.Tree.Document) -> Target | None:
    """The document's workflow, else its only task; None when it has neither."""
    if doc.workflow is not None:
        return doc.workflow
    if len(doc.tasks) == 1:
        return doc.tasks[0]
    return None


def require(doc: WDL.Tree.Document) -> Target:
    """``find``, or NoTarget saying why there is nothing to run."""
    found = find(doc)
    if found is None:
        raise NoTarget(f"no workflow to run: the document has no workflow and {len(doc.tasks)} tasks (it needs one)")
    return found
