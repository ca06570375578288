"""``local/remount.py``: which mounts a task's sandbox remounts read-only, with which flags, in
which order (a made-up mountinfo; the real remount is tests/local/test_sandbox.py's)."""

import subprocess
import sys

from miniwdl_fargate.local import remount
from miniwdl_fargate.local.sandbox import REMOUNT

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
