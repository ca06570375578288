"""``local/remount.py``: which mounts a task's sandbox remounts read-only, with which flags, in
which order (a made-up mountinfo; the real remount is tests/local/test_sandbox.py's)."""

import subprocess
import sys

from miniwdl_fargate.local import remount
from miniwdl_fargate.local.sandbox import REMOUNT
from tests.identity import SHOW, shown

ASKED = remount.MS_REMOUNT | remount.MS_BIND | remount.MS_RDONLY
MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:5 / /mnt/.root rw,relatime - ext4 /dev/sda1 rw
31 30 0:6 / /mnt/.root/proc rw,nosuid,nodev,noexec,relatime - proc proc rw
32 31 0:7 / /mnt/.root/proc/sys/fs/binfmt_misc rw,relatime - binfmt_misc binfmt_misc rw
33 30 0:8 / /mnt/.root/dev rw,nosuid,noatime - devtmpfs udev rw
34 30 0:9 / /mnt/.root/state rw,relatime - ext4 /dev/sda1 rw
35 34 0:9 / /mnt/.root/state/idmapped/t1/0 rw,relatime - ext4 /dev/sda1 rw
36 30 0:10 / /mnt/.root/stateful rw,relatime - ext4 /dev/sda1 rw
37 30 0:11 / /mnt/.root/with\\040space ro,nodev,nosymfollow - tmpfs tmpfs rw
38 22 0:12 / /other rw - tmpfs tmpfs rw
"""


def test_every_mount_of_the_new_root_but_proc_and_the_hidden_ones_deepest_first():
    found = remount.targets(MOUNTINFO, "/mnt/.root", ["/mnt/.root/state"], ASKED)
    assert found == [
        ("/mnt/.root/with space", ASKED | 4 | 256),  # nodev, nosymfollow kept
        ("/mnt/.root/stateful", ASKED | 1 << 21),  # relatime kept
        ("/mnt/.root/dev", ASKED | 2 | 1024),  # nosuid, noatime kept
        ("/mnt/.root", ASKED | 1 << 21),
    ]


def test_unknown_options_are_refused_before_anything_is_remounted():
    proc = subprocess.run([sys.executable, "-I", "-S", REMOUNT, "remount,rw", "/mnt/.root"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unknown options ['rw']" in proc.stderr


def identity_after(setup) -> dict[str, str]:
    """What ``SHOW`` prints in a child that ran ``setup()`` (None: nothing) and then execs it."""
    import os

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(write, 1)
            if setup is not None:
                setup()
            os.execvp(SHOW[0], SHOW)
        finally:
            os._exit(127)
    os.close(write)
    with os.fdopen(read) as out:
        output = out.read()
    assert os.waitpid(pid, 0)[1] == 0, output
    return shown(output)


def test_become_gives_the_identity_setpriv_gives():
    """``remount.become`` (the one-process sandbox, as root) leaves the command as ``setpriv
    --reuid --regid --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs`` does:
    the same uid, gid, groups, capability sets (all empty) and no_new_privs."""
    import os
    import shutil

    import pytest

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("as root, with setpriv")
    by_setpriv = subprocess.run(
        ["setpriv", "--reuid=4321", "--regid=4321", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
         "--no-new-privs", "--", *SHOW], capture_output=True, text=True, check=True,
    ).stdout
    assert identity_after(lambda: remount.become(4321, 4321)) == shown(by_setpriv)
    assert identity_after(lambda: remount.become(4321, 4321))["CapBnd"].strip() == "0000000000000000"


def test_user_namespace_gives_the_identity_unshare_gives():
    """``remount.user_namespace`` leaves the command as ``unshare --user --map-user --map-group``
    does: uid and gid 1000 of a namespace of its own, setgroups denied, no capability in effect."""
    import shutil

    import pytest

    if shutil.which("unshare") is None or subprocess.run(["unshare", "--user", "true"], capture_output=True).returncode:
        pytest.skip("user namespaces are not allowed here")
    by_unshare = subprocess.run(
        ["unshare", "--user", "--map-user=1000", "--map-group=1000", "--", *SHOW], capture_output=True, text=True, check=True,
    ).stdout
    ours = identity_after(lambda: remount.user_namespace(1000, 1000))
    assert ours == shown(by_unshare)
    assert ours["Uid"].split() == ["1000"] * 4 and ours["setgroups"].strip() == "deny"


def as_nobody_if_root() -> None:
    """This (forked) process as an unprivileged user: nobody's uid and gid if it is root, and
    dumpable again, as a process started as that user is (a change of uid leaves it not, and its
    /proc/self files root's: proc(5), /proc/sys/fs/suid_dumpable; prctl(2), PR_SET_DUMPABLE)."""
    import ctypes
    import os

    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        assert ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) == 0


NOBODY = 65534
PR_SET_DUMPABLE = 4  # <linux/prctl.h>


def test_a_private_namespace_as_a_user_gives_what_unshare_map_root_user_gives():
    """Local mode not run as root: a child of a fork server makes its namespaces itself,
    ``remount.private_namespace(as_user=True)``, as ``unshare --user --map-root-user --mount
    --propagation private`` makes them for a new process: root of a user namespace of its own
    (its capabilities there, setgroups denied), mapped onto the user it ran as, and able to
    mount in its own mount namespace (a tmpfs on /mnt, as a driver's and a task's setup do)."""
    import os
    import shutil

    import pytest

    from miniwdl_fargate.local.ecs_runner import NamespaceSupport

    unprivileged = {"user": NOBODY, "group": NOBODY, "extra_groups": []} if os.geteuid() == 0 else {}
    if shutil.which("unshare") is None or subprocess.run(["unshare", "--user", "true"], capture_output=True, **unprivileged).returncode:
        pytest.skip("user namespaces are not allowed here (to a user)")
    by_unshare = subprocess.run(
        ["unshare", *NamespaceSupport.AS_USER, "--", *SHOW],
        capture_output=True, text=True, check=True, **unprivileged,
    ).stdout

    def setup():
        as_nobody_if_root()
        remount.private_namespace(as_user=True)
        remount.mount("tmpfs", "/mnt", "tmpfs", 0, None)  # (raises where it may not: the child fails)

    ours = identity_after(setup)
    assert ours == shown(by_unshare)
    assert ours["Uid"].split() == ["0"] * 4 and ours["setgroups"].strip() == "deny"
    assert int(ours["CapEff"], 16) != 0  # (the namespace's root: its capabilities there)


def test_a_sandbox_set_up_by_a_new_process_runs_a_command_by_its_name_as_the_uid_of_its_own():
    """The new-process setup (``python -I -S remount.py sandbox``: a task's where it is not forked,
    and the machine probe's) finds a command by its name once it has become the task's uid, and
    says which command it could not run, with the exit status a shell gives (127, 126)."""
    import os
    import shutil

    import pytest

    from miniwdl_fargate.local.sandbox import Identity, StrictSandbox

    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("as root, with unshare")
    box = StrictSandbox(["unshare", "--mount", "--propagation", "private"], Identity("setpriv", 4321, 4321), [])
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}  # (a container's: every folder of it readable by any uid)

    def run(argv):
        return subprocess.run(box.wrap([], argv), capture_output=True, text=True, timeout=60, env=env)

    ran = run(["sh", "-c", "id -u; id -g"])
    assert (ran.returncode, ran.stdout.split()) == (0, ["4321", "4321"]), ran.stderr
    missing = run(["no-such-command-here"])
    assert missing.returncode == 127 and "cannot run no-such-command-here" in missing.stderr
    not_runnable = run(["/etc/passwd"])
    assert not_runnable.returncode == 126 and "cannot run /etc/passwd" in not_runnable.stderr


def test_reading_the_mount_table_compiles_no_pattern_in_the_task():
    """Each task's process is forked from the task fork server and reads the mount table once:
    a pattern compiled there is compiled again in every task (about 0.7 ms of CPU each, measured
    alone); the fork server compiled its patterns at import. (``re._cache``: the standard
    library's private cache of the patterns compiled by ``re.sub`` and the like, keyed by
    (type, pattern, flags); other threads of a test process may fill it too.)"""
    import re

    re.purge()
    found = remount.targets(MOUNTINFO, "/mnt/.root", [], ASKED)
    assert "/mnt/.root/with space" in [target for target, _ in found]
    assert r"\\([0-7]{3})" not in [key[1] for key in list(re._cache)]  # type: ignore[attr-defined]


def test_the_caveat_of_tasks_shown_as_uid_1000_says_why_they_have_no_uid_of_their_own(monkeypatch):
    """As root, a sandbox whose tasks are uid 1000 of a user namespace (the host's uid 0 without
    capabilities) says so, and why: idmapped mounts unavailable, or local mode's namespaces made
    in a user namespace (root without the right to mount: then there is no reason from a probe)."""
    import os

    from miniwdl_fargate.local.ecs_runner import NamespaceSupport
    from miniwdl_fargate.local.sandbox import APPARENT_UID, Identity, StrictSandbox

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    box = StrictSandbox(["unshare", *NamespaceSupport.AS_USER], Identity("userns", APPARENT_UID, APPARENT_UID), [])
    assert box.caveats("no idmapped mounts on overlay").endswith("(not as a uid of their own: no idmapped mounts on overlay)")
    assert box.caveats(None).endswith("(not as a uid of their own: local mode's namespaces are made in a user namespace here)")
