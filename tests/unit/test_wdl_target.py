"""One rule for what a WDL document runs (wdl_target), as validation, upload and the driver use it."""

import pytest
import WDL

from miniwdl_fargate import upload, wdl_target
from miniwdl_fargate.pipeline import validate

TASK = "task {name} {{ command <<< echo hi >>> }}\n"
WORKFLOW = "workflow w { call a }\n"


def document(*parts: str) -> WDL.Tree.Document:
    return WDL.parse_document("version 1.1\n" + "".join(parts), uri="w.wdl")


def test_the_workflow_is_the_target_whatever_tasks_there_are():
    doc = document(TASK.format(name="a"), TASK.format(name="b"), WORKFLOW)
    assert wdl_target.find(doc) is doc.workflow
    assert wdl_target.require(doc) is doc.workflow


def test_an_only_task_is_the_target():
    doc = document(TASK.format(name="a"))
    assert wdl_target.find(doc) is doc.tasks[0]


@pytest.mark.parametrize("tasks, said", [
    (0, "no workflow to run: the document has no workflow and no task"),
    (2, "no workflow to run: the document has no workflow and 2 tasks (t0, t1): name the one to run (--task NAME, or the run option task)"),
])
def test_no_workflow_and_not_one_task_is_nothing_to_run(tasks, said):
    doc = document(*(TASK.format(name=f"t{i}") for i in range(tasks)))
    assert wdl_target.find(doc) is None
    with pytest.raises(wdl_target.NoTarget) as failed:
        wdl_target.require(doc)
    assert str(failed.value) == said


def test_a_task_named_is_the_target_whatever_else_the_document_has():
    """`miniwdl run --task NAME` (the run option ``task``): a document of tasks only (BioWDL's and
    many others' task libraries), or a task of a document with a workflow."""
    doc = document(TASK.format(name="a"), TASK.format(name="b"), WORKFLOW)
    assert wdl_target.require(doc, "b") is doc.tasks[1] and wdl_target.find(doc, "a") is doc.tasks[0]
    assert wdl_target.find(doc, "w") is None  # (a workflow is not a task)
    with pytest.raises(wdl_target.NoTarget, match=r"^no task 'c' in the document \(its tasks: a, b\)$"):
        wdl_target.require(doc, "c")


def test_each_caller_reports_it_its_own_way():
    doc = document(TASK.format(name="a"), TASK.format(name="b"))
    problems = validate.Problems()
    assert validate.workflow_target(doc, "s3://b/w.wdl", problems) is None
    assert problems.found == [{
        "where": "s3://b/w.wdl",
        "problem": "no workflow to run: the document has no workflow and 2 tasks (a, b): name the one to run "
        "(--task NAME, or the run option task)",
    }]
    with pytest.raises(upload.RunInputError, match=r"^w\.wdl: no workflow to run: the document has no workflow and 2 tasks"):
        upload.workflow_target(doc)
