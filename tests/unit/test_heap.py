"""The garbage collector in local mode's long-lived processes (``local/heap``): off while a fork
server or a stack loads what it keeps, then those objects frozen, the collector on again."""

import json
import subprocess
import sys
import textwrap


def in_a_fresh_interpreter(code: str) -> dict:
    """What ``code`` prints (one JSON line), run by a new interpreter (the collector's state is
    the process's: the test's own process keeps its own)."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_what_loads_is_frozen_with_the_collector_off_meanwhile_and_on_again_after():
    seen = in_a_fresh_interpreter(
        """
        import gc, json
        from miniwdl_fargate.local import heap
        before = gc.get_freeze_count()
        with heap.load_then_freeze():
            during = gc.isenabled()
            kept = [[i] for i in range(10000)]  # (tracked by the collector: lists)
        print(json.dumps({"during": during, "after": gc.isenabled(), "frozen": gc.get_freeze_count() - before}))
        """
    )
    assert seen["during"] is False and seen["after"] is True
    assert seen["frozen"] >= 10000


def test_a_collector_that_was_off_stays_off_and_a_failing_load_still_freezes():
    seen = in_a_fresh_interpreter(
        """
        import gc, json
        from miniwdl_fargate.local import heap
        gc.disable()
        with heap.load_then_freeze():
            pass
        stays_off = not gc.isenabled()
        gc.enable()
        before = gc.get_freeze_count()
        try:
            with heap.load_then_freeze():
                kept = [[i] for i in range(1000)]
                raise RuntimeError("the deploy failed")
        except RuntimeError:
            pass
        print(json.dumps({"stays_off": stays_off, "on": gc.isenabled(), "frozen": gc.get_freeze_count() - before}))
        """
    )
    assert seen["stays_off"] is True and seen["on"] is True
    assert seen["frozen"] >= 1000



def test_a_second_load_collects_first_so_the_garbage_since_the_first_is_not_frozen():
    seen = in_a_fresh_interpreter(
        """
        import gc, json, weakref
        from miniwdl_fargate.local import heap

        class Node:
            pass

        with heap.load_then_freeze():
            kept = [[i] for i in range(1000)]
        cycle = Node()
        cycle.me = cycle  # (garbage only the collector frees: a cycle)
        gone = weakref.ref(cycle)
        del cycle
        gc.disable()  # (so that only the second load's collection may free it)
        with heap.load_then_freeze():
            pass
        print(json.dumps({"freed": gone() is None}))
        """
    )
    assert seen["freed"] is True

def test_a_fork_server_prepares_with_the_collector_off_and_serves_with_what_it_loaded_frozen():
    """``forkserver.server_main``: the preload (``prepare``) with the collector off; the server,
    and so each child it forks, with the preload's objects frozen and the collector on."""
    seen = in_a_fresh_interpreter(
        """
        import gc, json, socket, sys
        from miniwdl_fargate.local import forkserver
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sys.argv = ["server", str(theirs.fileno())]
        seen = {}
        def prepare():
            seen["preparing"] = gc.isenabled()
            seen["loaded"] = [[i] for i in range(5000)]
        def serve(server, become, expected_fds):
            print(json.dumps({"preparing": seen["preparing"], "serving": gc.isenabled(), "frozen": gc.get_freeze_count()}))
        forkserver.serve = serve
        forkserver.server_main(lambda *a: None, 1, prepare)
        """
    )
    assert seen["preparing"] is False and seen["serving"] is True
    assert seen["frozen"] >= 5000


def test_a_local_stack_starts_with_the_collector_off_and_its_imports_frozen(tmp_path):
    """``LocalStack.start``: moto's server, its imports and the deploy with the collector off;
    whether the start ends or is stopped (here at its first step), what it loaded is frozen and
    the collector on again."""
    seen = in_a_fresh_interpreter(
        f"""
        import gc, json
        from miniwdl_fargate.local.stack import LocalStack
        seen = {{}}
        class Stopped(Exception):
            pass
        def check():
            seen["starting"] = gc.isenabled()
            raise Stopped()
        try:
            with LocalStack(state_dir={str(tmp_path / "state")!r}, check=check):
                pass
        except Stopped:
            pass
        print(json.dumps({{**seen, "after": gc.isenabled(), "frozen": gc.get_freeze_count()}}))
        """
    )
    assert seen["starting"] is False and seen["after"] is True
    assert seen["frozen"] > 10_000
