"""What the driver uploads of a run's File/Directory outputs: what the tasks made, nothing else.

Before a byte goes to S3 the driver checks every output (``plan``): a File output, and the
top of a Directory output, must really be (its symbolic links resolved) within the run's
directories (``roots``: the runs on this filesystem, for outputs taken from the call cache, and
the staged inputs); a Directory output is walked without following links blindly
(``lstat``): a symbolic link in it is uploaded as the file or directory it points to when that
stays inside the run's directory (a Directory from the call cache or an input: inside itself),
and refused when it leaves it, is broken, or loops; a FIFO, a socket or a device is refused
(opening a FIFO to read it would block forever); a file whose S3 key would be over S3's 1,024
bytes is refused too (``s3_key``). Any refusal names the output, the path inside it and what it
is (``OutputRefused``), and nothing of the run is uploaded.

miniwdl itself already refuses a File output outside the task's work directory or not a regular
file, and a Directory holding a link to a file outside it or an absolute one; it lets through
a Directory holding a FIFO, a socket, a device, or a link to a directory anywhere.
"""

from __future__ import annotations

import errno
import os
import stat

from . import s3io


class OutputRefused(ValueError):
    """An output the driver will not upload (the message says which, where and why)."""


def kind(mode: int) -> str:
    """What a file that is not a regular file or a directory is, in words."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return f"a special file (mode {oct(stat.S_IFMT(mode))})"


def within(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or under it (both real paths)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def resolve(output: str, where: str, path: str) -> str:
    """The real path a link leads to; OutputRefused if it leads nowhere (broken, or a loop)."""
    try:
        return os.path.realpath(path, strict=True)
    except FileNotFoundError:
        target = f" (to {os.readlink(path)})" if os.path.islink(path) else ""
        raise OutputRefused(f"output {output}: {where} is a broken symbolic link{target}") from None
    except OSError as exn:
        if exn.errno == errno.ELOOP:
            raise OutputRefused(f"output {output}: {where} is a symbolic link loop") from None
        raise OutputRefused(f"output {output}: {where} cannot be read: {exn.strerror}") from None


def unnameable(name: str) -> str | None:
    """Why a file of this name cannot be an S3 object, if it cannot: a key is UTF-8 text, and a
    name that is not (Python holds its bytes as surrogates) cannot be written as one."""
    try:
        name.encode()
    except UnicodeEncodeError as exn:
        byte = ord(name[exn.start]) - 0xDC00
        return f"its name is not UTF-8 (byte 0x{byte:02x}), which an S3 key must be: rename it"
    return None


def s3_key(output: str, where: str, key: str) -> str:
    """``key``, the S3 key of ``where`` (a File output's path, or a path inside a Directory
    output; ``output`` says which: ``File output w.x``); OutputRefused if S3 would refuse it for
    its length (a Directory output holding a deep tree, under a long run name)."""
    length = s3io.key_bytes(key)  # (a name that is not UTF-8 is refused elsewhere; S3 refuses a longer key
    # KeyTooLongError, so the run would fail mid-upload)
    if length > s3io.MAX_KEY_BYTES:
        raise OutputRefused(
            f"{output}: {where} would be an S3 object whose key is {length} bytes, where S3 allows {s3io.MAX_KEY_BYTES} "
            f"(the key: results prefix of the run, then out/, the output's name and its path): shorten the run's "
            f"name or the paths inside the output"
        )
    return key


def file_output(output: str, path: str, roots: list[str]) -> str:
    """The real path of a File output to upload, once it is checked (see the module's doc)."""
    if problem := unnameable(os.path.basename(path)):
        raise OutputRefused(f"File output {output}: {path!r}: {problem}")
    real = resolve(output, path, path)
    if not any(within(real, root) for root in roots):
        raise OutputRefused(f"File output {output}: {path} leads to {real}, outside the run's directories")
    mode = os.stat(real).st_mode
    if not stat.S_ISREG(mode):
        raise OutputRefused(f"File output {output}: {path} is {kind(mode)}, not a file")
    return real


def directory_output(output: str, path: str, roots: list[str], run_dir: str) -> list[tuple[str, str]]:
    """The files of a Directory output to upload, as (real path, path inside the output), once
    each is checked (see the module's doc), and each empty folder inside as ("", "<its path>/"). Links inside must stay in ``run_dir`` (real path),
    or, for a Directory elsewhere (the call cache's, an input), in the Directory itself."""
    top = resolve(output, path, path)
    if not any(within(top, root) for root in roots):
        raise OutputRefused(f"Directory output {output}: {path} leads to {top}, outside the run's directories")
    if not os.path.isdir(top):
        raise OutputRefused(f"Directory output {output}: {path} is not a directory")
    bound = run_dir if within(top, run_dir) else top
    found: list[tuple[str, str]] = []
    _walk(output, top, "", bound, {top}, found)
    return found


def _walk(output: str, real_dir: str, rel_dir: str, bound: str, above: set[str], found: list[tuple[str, str]]) -> None:
    """Add the files under ``real_dir`` (``rel_dir`` inside the output) to ``found``; ``above``:
    the real directories it is inside of (a link back to one is a cycle)."""
    with os.scandir(real_dir) as entries:
        names = sorted(entry.name for entry in entries)
    if not names and rel_dir:  # an empty folder inside: ("", "<its path>/"), a folder marker to be
        found.append(("", rel_dir + "/"))
    for name in names:
        rel = os.path.join(rel_dir, name)
        real = os.path.join(real_dir, name)
        if problem := unnameable(name):
            raise OutputRefused(f"Directory output {output}: {rel!r}: {problem}")
        mode = os.lstat(real).st_mode
        if stat.S_ISLNK(mode):
            real = resolve(output, rel, real)
            if not within(real, bound):
                raise OutputRefused(
                    f"Directory output {output}: {rel} is a symbolic link to {real}, outside {bound}"
                )
            mode = os.stat(real).st_mode
        if stat.S_ISDIR(mode):
            if real in above:
                raise OutputRefused(f"Directory output {output}: {rel} is a symbolic link to a directory it is in (a cycle)")
            _walk(output, real, rel, bound, above | {real}, found)
        elif stat.S_ISREG(mode):
            found.append((real, rel))
        else:
            raise OutputRefused(f"Directory output {output}: {rel} is {kind(mode)}, which cannot be uploaded")
