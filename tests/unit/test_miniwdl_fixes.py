"""miniwdl_fixes.py: miniwdl's post-task chmod leaves a task's hard-linked inputs
read-only (they share their inode with the staged copy other tasks link to); its plugins are
looked up once; the driver and miniwdl's runner share one load of the workflow."""

import os
import stat

import WDL
import WDL.CLI
import WDL.runtime.task
from WDL._util import chmod_R_plus

from miniwdl_fargate import miniwdl_fixes


def run_dir(tmp_path):
    """A task's run directory as the backend leaves it: an input hard-linked from the staged
    store and read-only, an output, and a subfolder."""
    staged = tmp_path / "store" / "precious.txt"
    staged.parent.mkdir()
    staged.write_text("precious\n")
    run = tmp_path / "call-x"
    inputs = run / "work" / "_miniwdl_inputs" / "0"
    inputs.mkdir(parents=True)
    os.link(staged, inputs / "precious.txt")
    os.chmod(staged, 0o444)
    (run / "work" / "out.txt").write_text("out\n")
    os.chmod(run / "work" / "out.txt", 0o600)
    (run / "work" / "sub").mkdir(mode=0o700)
    (run / "work" / "sub" / "deep.txt").write_text("d\n")
    os.chmod(run / "work" / "sub" / "deep.txt", 0o600)
    os.symlink("out.txt", run / "work" / "link")
    return run, staged


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_miniwdl_still_makes_a_hard_linked_input_writable_again(tmp_path):
    """When this fails, miniwdl no longer adds write bits to the inputs in a run directory (or
    no longer chmods it at all): drop miniwdl_fixes.inputs_stay_read_only."""
    run, staged = run_dir(tmp_path)
    chmod_R_plus(str(run), file_bits=0o660, dir_bits=0o770)
    assert mode(staged) & 0o220  # the shared inode: every task's and run's input, writable again


def test_the_fix_keeps_inputs_read_only_and_chmods_the_rest_as_miniwdl_does(tmp_path):
    run, staged = run_dir(tmp_path)
    miniwdl_fixes.chmod_R_plus_but_inputs(str(run), file_bits=0o660, dir_bits=0o770)
    assert mode(staged) == 0o444
    assert mode(run / "work" / "out.txt") == 0o660
    assert mode(run / "work" / "sub") == 0o770 and mode(run / "work" / "sub" / "deep.txt") == 0o660
    assert mode(run / "work") & 0o770 == 0o770


def test_installed_by_the_backends_for_miniwdl_task_runner(tmp_path):
    miniwdl_fixes.inputs_stay_read_only()
    assert WDL.runtime.task.chmod_R_plus is miniwdl_fixes.chmod_R_plus_but_inputs


def test_plugins_are_looked_up_once_and_are_the_ones_miniwdl_finds(monkeypatch):
    """miniwdl reads every distribution's entry points per task; the fix finds the same plugins once."""
    import WDL.runtime.config

    cfg = WDL.runtime.config.Loader(__import__("logging").getLogger("test"))
    lookups = []
    real = miniwdl_fixes._miniwdl_load_plugins

    def counting(cfg_, group):
        lookups.append(group)
        return real(cfg_, group)

    monkeypatch.setattr(miniwdl_fixes, "_miniwdl_load_plugins", counting)
    monkeypatch.setattr(miniwdl_fixes, "_found", {})
    monkeypatch.setattr(WDL.runtime.config, "load_plugins", WDL.runtime.config.load_plugins)
    monkeypatch.setattr(miniwdl_fixes, "_plugins_patched", False)
    expected = sorted(name for name, _ in real(cfg, "container_backend"))
    assert "aws_fargate" in expected
    miniwdl_fixes.plugins_found_once()
    assert WDL.runtime.config.load_plugins is miniwdl_fixes.load_plugins_once
    for _ in range(3):
        assert sorted(name for name, _ in WDL.runtime.config.load_plugins(cfg, "container_backend")) == expected
    assert lookups == ["container_backend"]
    list(WDL.runtime.config.load_plugins(cfg, "task"))
    assert lookups == ["container_backend", "task"]


def test_miniwdl_runs_the_document_the_driver_loaded_or_loads_it_for_the_driver(tmp_path, monkeypatch):
    """``miniwdl run`` in the driver (``driver.miniwdl_run``) loads the workflow through
    ``WDL.CLI.load``: within ``workflow_loaded_once`` it runs the document the driver loaded
    without loading it again, or, if the driver had not, loads it once and hands it over. This
    fails when miniwdl's runner stops loading through ``WDL.CLI.load`` (the fix then does nothing)."""
    from miniwdl_fargate import driver

    wdl = tmp_path / "w.wdl"
    wdl.write_text("version 1.1\nworkflow w { input { Int n = 1 } output { Int x = n + 1 } }\n")
    (tmp_path / "in.json").write_text('{"w.n": 41}')
    loads = []
    miniwdls = WDL.CLI.load

    def load(*args, **kwargs):
        loads.append(args[0])
        return miniwdls(*args, **kwargs)

    monkeypatch.setattr(WDL.CLI, "load", load)

    def run(name, loaded, keep):
        with miniwdl_fixes.workflow_loaded_once(str(wdl), True, loaded, keep):
            code, result = driver.miniwdl_run(str(wdl), str(tmp_path / "in.json"), str(tmp_path / name))
        assert code == 0 and result["outputs"] == {"w.x": 42}, result
        return result

    drivers = WDL.load(str(wdl))
    kept = []
    run("given", lambda: drivers, kept.append)
    assert loads == [] and kept == []  # miniwdl ran the driver's document
    run("kept", lambda: None, kept.append)
    assert loads == [str(wdl)] and len(kept) == 1 and isinstance(kept[0], WDL.Tree.Document) and kept[0] is not drivers
    # another workflow, or the same loaded otherwise (quantifiers unchecked), is miniwdl's own load
    with miniwdl_fixes.workflow_loaded_once(str(wdl), False, lambda: drivers, kept.append):
        WDL.CLI.load(str(wdl), [], check_quant=True)
    assert loads == [str(wdl)] * 2 and len(kept) == 1
    assert WDL.CLI.load is load  # (miniwdl's own again after the block)
