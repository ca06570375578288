"""miniwdl's WDL parsers from a cache on disk: built once per machine, not once per command.

miniwdl builds a Lark LALR parser per grammar version the first time a process parses a
document (``WDL._parser.parse``): about 0.35 s of CPU, most of what ``miniwdl-fargate submit``
spends checking a workflow before it uploads it. Lark can keep what that build computes in a
file and load it in about 0.01 s (its ``cache`` option). ``use_cache`` makes miniwdl's parser
module build its parsers with that option, everything else as miniwdl asks; Lark itself checks
that a file was made from the same grammar, options, Lark and Python versions, and builds anew
otherwise. The files are pickles, so they are only read from a folder of the user's own that
nobody else may write to ($XDG_CACHE_HOME/miniwdl-fargate/wdl-parsers). A file Lark cannot load
(half written by a concurrent command, say) is built anew and written again, never an error.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import stat
import sys
import types
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def cache_folder() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "miniwdl-fargate" / "wdl-parsers"


def use_cache(folder: Path | None = None) -> bool:
    """From now on, this process's miniwdl builds its parsers through the cache in ``folder``
    (default ``cache_folder()``). False (nothing changed) if the folder cannot be made private."""
    import lark
    import WDL._parser as parser_module

    if isinstance(parser_module.lark, _CachingLark):
        return True
    folder = folder or cache_folder()
    if not _private_folder(folder):
        log.debug("not caching WDL parsers: %s is not a private folder of this user", folder)
        return False
    parser_module.lark = _CachingLark(lark, folder)
    return True


def _private_folder(folder: Path) -> bool:
    """The folder exists (made if need be), is this user's, and no one else may write to it."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.stat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022


class _CachingLark(types.ModuleType):
    """The ``lark`` module as miniwdl's parser module sees it: all of it, but ``Lark`` adds the cache."""

    def __init__(self, real: types.ModuleType, folder: Path) -> None:
        super().__init__(real.__name__)
        self.__dict__.update({k: v for k, v in vars(real).items() if k not in ("__name__", "__spec__")})
        self.Lark = functools.partial(_cached_lark, real.Lark, folder)


def _cached_lark(build: Any, folder: Path, grammar: str, **options: Any) -> Any:
    """``build(grammar, **options)`` (lark.Lark) with its analysis read from, or written to, a
    file of ``folder`` named after the grammar, the options (the callbacks left out) and the
    versions of Lark and Python."""
    import lark

    hashable = sorted((k, str(v)) for k, v in options.items() if k not in ("lexer_callbacks", "transformer", "postlex"))
    key = hashlib.sha256(repr((grammar, hashable, lark.__version__, sys.version_info[:2])).encode()).hexdigest()[:32]
    # (Lark's own check of a file covers its path too: the file is written where it is read)
    return build(grammar, cache=str(folder / f"{key}.lark"), **options)
