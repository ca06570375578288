"""The driver's upload of a run's File/Directory outputs (``upload``): what the tasks made, nothing else.

Before a byte goes to S3 the driver checks every output (``plan``): a File output, and the
top of a Directory output, must really be (its symbolic links resolved) within the run's
directories (``roots_of``: the runs on this filesystem, for outputs taken from the call cache, and
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
from typing import TYPE_CHECKING, Any

import WDL

from . import aws, s3io, wdl_target

if TYPE_CHECKING:
    from .driver import DriverRun


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


# -- the upload, under the run's results prefix ---------------------------------------------------


def upload(
    run: DriverRun, doc: WDL.Tree.Document, outputs: dict[str, Any], run_dir: str, progress: s3io.Progress | None = None,
    counted: s3io.Counted | None = None,
) -> dict[str, Any]:
    """Upload ``run``'s File/Directory outputs (bounded, in parallel: s3io.Transfers), each checked
    first (``plan``: a refused one uploads nothing of the run); return the outputs with s3:// URIs
    in their place. ``doc``: the workflow's document; ``progress`` is called as the bytes go (it
    raises DriverStopped to stop the upload), ``counted`` with the files done and known."""
    target: Any = wdl_target.find(doc, run.task())
    if target is None:
        raise RuntimeError("cannot tell which workflow or task ran")
    env = WDL.values_from_json(outputs, target.effective_outputs, namespace=target.name)
    out_dir = os.path.realpath(os.path.join(run_dir, "out"))
    bucket = run.results_bucket
    links = out_links(os.path.join(run_dir, "out"))

    taken: set[str] = set()
    elsewhere: dict[str, str] = {}  # a file or folder out/ has no place for (a Map's File key) -> its key

    def key_for(path: str, output: str) -> str:
        real = os.path.realpath(path.rstrip("/"))
        rel = os.path.relpath(path.rstrip("/"), os.path.join(run_dir, "out"))
        if rel.startswith(".."):
            rel = os.path.relpath(real, out_dir)
        if rel.startswith("..") and real in links:
            # an output taken from the call cache lives elsewhere (an earlier run's directory,
            # the cache's files); this run's out/ links to it under each output's own name, once
            # per place it is a value of: the same place as in a run that ran the call
            rel = out_link(links[real], output, taken)
        if rel.startswith(".."):
            # (miniwdl links no Map key into out/): a folder of its own per file, so two such
            # files of one name stay two, the same file is one, under a name no output has (an
            # output's is a WDL identifier: no "-"), by the name it was given
            rel = elsewhere.setdefault(
                real, os.path.join(MAP_KEYS_DIR, str(len(elsewhere)), os.path.basename(path.rstrip("/")))
            )
        return run.results_key("out/" + rel)

    # every output is checked before anything is uploaded: a refused run uploads nothing
    found_roots = roots_of(run)
    real_run_dir = os.path.realpath(run_dir)
    uploads: list[tuple[str, str]] = []  # (local file, key)
    folders: list[str] = []  # the keys of empty Directory outputs' folder markers

    def plan(output: str, value: WDL.Value.File | WDL.Value.Directory) -> str:
        name = f"{target.name}.{output}"
        path = value.value
        if "://" in path:  # (a URI nothing downloaded, `File x = "s3://..."`: given as it is, as miniwdl gives it)
            return path
        key = key_for(path, output)
        if isinstance(value, WDL.Value.Directory):
            files = directory_output(name, path, found_roots, real_run_dir)
            for local, rel in files:
                where = s3_key(f"Directory output {name}", rel, key + "/" + rel)
                if rel.endswith("/"):  # (an empty folder inside: its "<path>/" marker, as for an empty Directory)
                    folders.append(where)
                else:
                    uploads.append((local, where))
            if not files:  # (S3 has no folders: an empty "<key>/" object, as the S3 console makes one, says it is there)
                folders.append(s3_key(f"Directory output {name}", path, key + "/"))
            return s3io.uri(bucket, key + "/")
        uploads.append((file_output(name, path, found_roots), s3_key(f"File output {name}", path, key)))
        return s3io.uri(bucket, key)

    rewritten = env.map(
        lambda b: WDL.Env.Binding(
            b.name, WDL.Value.rewrite_paths(b.value, lambda v: plan(b.name, v)), b.info
        )
    )
    with s3io.Transfers(progress, counted) as transfers:
        transfers.upload((local, bucket, key) for local, key in uploads)
    for folder in folders:
        aws.client("s3").put_object(Bucket=bucket, Key=folder, Body=b"")
    return WDL.values_to_json(rewritten, namespace=target.name)


#: where under out/ the files that are Map keys go (miniwdl links none into out/): not a WDL
#: identifier, so no output's folder
MAP_KEYS_DIR = "map-keys"


def roots_of(run: DriverRun) -> list[str]:
    """Where an output may really be (real paths): the runs of this filesystem (this run's own
    directory, and earlier runs' whose outputs the call cache reuses) and the staged inputs."""
    found = [os.path.dirname(os.path.realpath(run.workdir))]
    if run.cache_dir:
        found.append(os.path.realpath(run.cache_dir))
    return found


def out_links(out_dir: str) -> dict[str, list[str]]:
    """What each entry of miniwdl's out/ tree is (its real path) -> every place it is under out/
    (one per output value it is: ``File a`` and ``Array[File] ab`` of the same file are
    ``a/a.txt`` and ``ab/0/a.txt``), in order."""
    found: dict[str, list[str]] = {}
    for root, dirs, files in os.walk(out_dir):  # (symlinked directories are listed, not entered)
        dirs.sort()
        for name in sorted(files + dirs):
            path = os.path.join(root, name)
            found.setdefault(os.path.realpath(path), []).append(os.path.relpath(path, out_dir))
    return found


def out_link(places: list[str], output: str, taken: set[str]) -> str:
    """Of ``places`` (``out_links``), the first under ``output``'s own folder not ``taken`` yet
    (then taken); else the first under it, else the first."""
    own = [p for p in places if p.split(os.sep, 1)[0] == output] or places
    chosen = next((p for p in own if p not in taken), own[0])
    taken.add(chosen)
    return chosen
