"""``miniwdl zip`` bundles: checked before anything starts, then read member by member.

A bundle is a ZIP archive of a workflow's WDL documents (and any files added with ``miniwdl zip
--add``) with a ``MANIFEST.json`` naming the main WDL (``mainWorkflowURL``) and, optionally, its
default inputs (``inputFileURLs``), as miniwdl's ``WDL.Zip.build`` writes it. Every entrance (an
S3 drop's ``runs/<name>/workflow.zip``, the API's ``workflow`` naming an ``s3://…/x.zip``, the
CLI's ``submit``/``local run`` given a ``.zip``) reads it here, so each refuses the same bundles
with the same words: not a ZIP archive; more than ``MAX_FILES`` files or ``MAX_BYTES`` (as
compressed, and as declared uncompressed: a zip bomb is refused from its directory, before a
byte is inflated, and reading a member never yields more than its declared size, its CRC
checked) or a directory of more than ``MAX_ENTRIES`` entries (refused from its end record, before
the directory is read); a member name that is absolute, climbs out with ``..``, is a symbolic
link or is given twice; an encrypted member, or one compressed in a way zipfile cannot read; no
main WDL.

The manifest is read by miniwdl itself (``WDL.Zip.unpack`` on the bundle's small metadata files,
extracted after the checks above): the pipeline accepts what ``miniwdl run x.zip`` accepts.
Without a manifest, the bundle's only top-level ``*.wdl`` is its main WDL.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from . import inputs_json, runs

#: the same limits as a workflow's folder (``pipeline.snapshot``, ``upload``)
MAX_FILES = 200
MAX_BYTES = 256 * 1024 * 1024
#: entries (files and folders) of a bundle's directory, counted from its end record before the
#: directory itself is read: millions of tiny entries would take the reader's memory first
MAX_ENTRIES = 1000
MANIFEST = "MANIFEST.json"
#: the compression methods Python's zipfile reads (others, e.g. Deflate64, are refused up front)
READABLE_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})
#: extracted to read the manifest with miniwdl: the manifest and what it may name (a main WDL or
#: default inputs larger than this would be refused anyway: pipeline.validate.MAX_WDL_BYTES,
#: inputs_json.MAX_INPUTS_BYTES), so a bundle's data files never take a second copy's room
METADATA_SUFFIXES = (".wdl", ".json")
METADATA_MAX_BYTES = 2 * 1024 * 1024
SUFFIX = ".zip"


class BundleError(ValueError):
    """The bundle cannot be used; the message says what is wrong and where."""


def is_bundle(path_or_uri: str) -> bool:
    """Whether a workflow is given as a ``miniwdl zip`` bundle (by its name)."""
    return path_or_uri.lower().endswith(SUFFIX)


@dataclass
class Bundle:
    """A checked bundle, open: its members, its main WDL and its default inputs."""

    archive: zipfile.ZipFile
    where: str
    main: str  # the main WDL's name inside the archive
    defaults: dict[str, Any] = field(default_factory=dict)

    def files(self) -> list[zipfile.ZipInfo]:
        return [info for info in self.archive.infolist() if not info.is_dir()]

    def open(self, info: zipfile.ZipInfo) -> IO[bytes]:
        """One member's bytes, never more than its declared size (zipfile stops there and checks
        its CRC)."""
        return self.archive.open(info)

    def extract_to(self, folder: str) -> str:
        """Write every member under ``folder`` (names checked already); the main WDL's path."""
        for info in self.files():
            path = os.path.join(folder, *info.filename.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with self.open(info) as member, open(path, "wb") as out:
                while chunk := member.read(1 << 20):
                    out.write(chunk)
        return os.path.join(folder, *self.main.split("/"))


def name_problem(name: str) -> str | None:
    """Why a member name cannot be unpacked where the bundle goes, if it cannot."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if ".." in parts:
        return "a path that climbs out of the bundle (..)"
    if "\\" in name:
        return "a name with a backslash"
    if not runs.in_bundle(name):
        return f"a name the pipeline keeps for the run's own files ({runs.INPUTS_NAME}, {runs.OPTIONS_NAME}, {runs.RESULTS_DIR}/)"
    return None


def is_link(info: zipfile.ZipInfo) -> bool:
    """A symbolic link, as Unix zip tools store one (its mode in the high 16 bits)."""
    return stat.S_ISLNK(info.external_attr >> 16)


def check_members(archive: zipfile.ZipFile, where: str) -> None:
    """Every member a plain file or folder with a safe name, within the limits (declared sizes)."""
    infos = archive.infolist()
    files = [i for i in infos if not i.is_dir()]
    declared = sum(i.file_size for i in files)
    if len(files) > MAX_FILES or declared > MAX_BYTES:
        raise BundleError(
            f"{where}: holds {len(files)} files, {declared} bytes uncompressed; a bundle may hold at most "
            f"{MAX_FILES} files and {MAX_BYTES >> 20} MiB (its workflow's WDL and the files it reads by relative path)"
        )
    seen: set[str] = set()
    for info in infos:
        problem = name_problem(info.filename)
        if problem is None and is_link(info):
            problem = "a symbolic link (store the file itself)"
        if problem is None and info.flag_bits & 0x1:
            problem = "encrypted"
        if problem is None and info.compress_type not in READABLE_METHODS:
            problem = f"compressed with method {info.compress_type}, which cannot be read (store or deflate it, as `miniwdl zip` does)"
        if problem is None and info.filename.rstrip("/") in seen:
            problem = "given twice"
        if problem:
            raise BundleError(f"{where}: member {info.filename!r} is {problem}; nothing was started")
        seen.add(info.filename.rstrip("/"))


def find_main(archive: zipfile.ZipFile, where: str) -> tuple[str, str | None]:
    """(main WDL, default inputs file or None), names inside the archive: from MANIFEST.json read
    by miniwdl (``WDL.Zip.unpack``), else the only top-level ``*.wdl``."""
    import WDL.Zip

    names = {i.filename for i in archive.infolist() if not i.is_dir()}
    if MANIFEST not in names:
        top = sorted(n for n in names if "/" not in n and n.endswith(".wdl"))
        if len(top) == 1:
            return top[0], None
        found = f"several top-level WDL files ({', '.join(top)})" if top else "no top-level WDL file"
        raise BundleError(f"{where}: no main WDL: no {MANIFEST} naming it and {found}; build the bundle with `miniwdl zip`")
    with tempfile.TemporaryDirectory(prefix="bundle-manifest-") as folder:
        for info in archive.infolist():
            if not info.is_dir() and info.filename.endswith(METADATA_SUFFIXES) and info.file_size <= METADATA_MAX_BYTES:
                archive.extract(info, folder)  # (names checked: check_members)
        try:
            with WDL.Zip.unpack(folder) as unpacked:
                main = os.path.relpath(unpacked.main_wdl, unpacked.dir).replace(os.sep, "/")
                given = os.path.relpath(unpacked.input_file, unpacked.dir).replace(os.sep, "/") if unpacked.input_file else None
        except WDL.Error.InputError as exn:
            said = str(exn).replace(os.path.join(folder, MANIFEST), "the bundle").replace(folder, "the bundle")
            raise BundleError(f"{where}: no main WDL: {said}") from None
    return main, given


def read_defaults(archive: zipfile.ZipFile, name: str | None, where: str) -> dict[str, Any]:
    """The bundle's default inputs (an inputs JSON, read as every inputs JSON is), or none."""
    if name is None:
        return {}
    info = archive.getinfo(name)
    if problem := inputs_json.size_problem(info.file_size):
        raise BundleError(f"{where}: {name}: {problem}")
    try:
        return inputs_json.load_object(archive.read(info), f"{where}: {name}")
    except inputs_json.InputsJSONError as exn:
        raise BundleError(str(exn)) from None


def size_problem(size: int, where: str) -> str | None:
    """Why a bundle of ``size`` bytes (compressed) is refused before it is read, if it is."""
    if size > MAX_BYTES:
        return f"{where}: {size} bytes; a bundle may have at most {MAX_BYTES >> 20} MiB"
    return None


def entries_problem(fp: IO[bytes], where: str) -> str | None:
    """Why the archive's directory is too large to read, if it is: its entry count as its end of
    central directory record gives it (zipfile's own reading of that record)."""
    end = zipfile._EndRecData(fp)  # type: ignore[attr-defined]
    if end is None:  # not a ZIP archive: ZipFile says so
        return None
    entries = int(end[zipfile._ECD_ENTRIES_TOTAL])  # type: ignore[attr-defined]
    if entries > MAX_ENTRIES:
        return f"{where}: holds {entries} entries; a bundle may hold at most {MAX_FILES} files ({MAX_ENTRIES} entries with its folders)"
    return None


@contextlib.contextmanager
def opened(source: str | os.PathLike | IO[bytes], where: str) -> Iterator[Bundle]:
    """The checked bundle in ``source`` (a path, or a seekable file), open for reading; BundleError
    saying what is wrong otherwise."""
    with contextlib.ExitStack() as cleanup:
        try:
            fp = source if hasattr(source, "read") else cleanup.enter_context(open(source, "rb"))  # type: ignore[arg-type]
            if problem := entries_problem(fp, where):  # type: ignore[arg-type]
                raise BundleError(problem)
            archive = cleanup.enter_context(zipfile.ZipFile(fp))  # type: ignore[arg-type]
        except (zipfile.BadZipFile, EOFError):
            raise BundleError(f"{where}: not a ZIP archive (build the bundle with `miniwdl zip WORKFLOW.wdl`)") from None
        except OSError as exn:
            raise BundleError(f"{where}: {exn.strerror or exn}") from None
        try:
            check_members(archive, where)
            main, defaults_name = find_main(archive, where)
            yield Bundle(archive, where, main, read_defaults(archive, defaults_name, where))
        except (zipfile.BadZipFile, EOFError, zlib.error) as exn:  # a member's data corrupt (CRC) or cut short
            raise BundleError(f"{where}: a damaged ZIP archive ({exn})") from None


def merge_defaults(defaults: dict[str, Any], given: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The bundle's default inputs with the submitted ones over them, input by input: a key
    with or without the workflow's name in front (``wf.x`` or ``x``) names the same input."""

    def bare(key: str) -> str:
        return key[len(namespace) + 1 :] if namespace and key.startswith(namespace + ".") else key

    overridden = {bare(k) for k in given}
    return {**{k: v for k, v in defaults.items() if bare(k) not in overridden}, **given}

