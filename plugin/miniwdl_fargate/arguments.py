"""Command-line argument checking: every bad argument is one line saying what is wrong and what is
allowed, exit status 2, never a traceback (argparse's own usage dump included)."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import traceback
from typing import Any, NoReturn

from . import runs

DEBUG_ENV = "MINIWDL_FARGATE_DEBUG"
USAGE_ERROR = 2


class Parser(argparse.ArgumentParser):
    """argparse, answering a bad command line with one line (``error: <prog>: ...``) instead of
    the usage text; ``--help`` still shows it. Subparsers inherit this class. An option is only
    known by its whole name (argparse would take ``--loc`` for ``--local``, and with it the next
    word as its value)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def value_only_after_equals(argv: list[str], flags: tuple[str, ...], commands: frozenset[str] | None = None) -> list[str]:
    """``argv`` with each bare ``flag`` of ``flags`` (an option whose value is optional) written
    ``flag=``, so that it never takes the next word as its value: ``submit --local WF.wdl``
    submits WF.wdl to the default local stack, and another stack's file is ``--local=FILE``
    (as git's options with an optional value work). argparse alone would read WF.wdl as the
    file. Words after ``--`` are positional and left as they are; with ``commands``, only a
    command line of one of them is rewritten."""
    command = next((word for word in argv if not word.startswith("-")), None)
    if commands is not None and command not in commands:
        return list(argv)  # (a command without these options: its parser says what it does not know)
    out: list[str] = []
    for i, word in enumerate(argv):
        if word == "--":
            return out + argv[i:]
        out.append(f"{word}=" if word in flags else word)
    return out


def positive_seconds(text: str) -> float:
    """``--timeout``: a finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (e.g. 600 or 0.5)") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} seconds: must be a number above 0 (e.g. 600)")
    return value


def port(text: str) -> int:
    """``--api-port``: a TCP port, 0 for any free one."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0-65535; 0: any free port)")
    return int(text)


def positive_int(text: str) -> int:
    """``--limit``: a whole number above 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (e.g. 50)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be 1 or more")
    return value


def days(text: str) -> float:
    """A number of days, 0 or more (e.g. 3 or 0.5)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days (e.g. 3 or 0.5)") from None
    if not 0 <= value <= 36500:
        raise argparse.ArgumentTypeError(f"{text} days: must be from 0 to 36500")
    return value


def stack_parameter(text: str) -> tuple[str, str]:
    """``--parameter``: a template parameter override, ``Key=Value`` (the value may be empty)."""
    key, sep, value = text.partition("=")
    if not sep or not key.isalnum():
        raise argparse.ArgumentTypeError(f"{text!r} is not Key=Value with a template parameter name (e.g. ManagedInstances=Enabled)")
    return key, value


def run_name(text: str) -> str:
    """``--name``: a run name (runs.check_name: what S3 keys and Step Functions execution names
    both take)."""
    try:
        return runs.check_name(text)
    except ValueError as exn:
        raise argparse.ArgumentTypeError(str(exn)) from None


def run_id(text: str) -> str:
    """A RUN argument: ``<run name>-<8 hex digits>``, as submit prints it."""
    try:
        return runs.check_run_id(text)
    except ValueError as exn:
        raise argparse.ArgumentTypeError(str(exn)) from None


#: a NAME=VALUE input on the command line, as ``miniwdl run`` takes one (``wf.x=1``, ``x=a.txt``)
ASSIGNMENT = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*=")


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """``miniwdl run``'s other ways of giving inputs, for its users' hands: ``-i/--input`` (the
    inputs file, or ``-`` for standard input, or a JSON object itself), ``--empty NAME`` and
    ``--none NAME``."""
    parser.add_argument(
        "-i", "--input", dest="input_file", metavar="INPUTS.json",
        help="the inputs file (as INPUTS takes one), - for a JSON object on standard input, or the JSON object "
        "itself, as `miniwdl run -i` takes them; local paths in the last two relative to the current folder",
    )
    parser.add_argument("--empty", metavar="NAME", action="append", default=[],
                        help="set the input NAME to an empty array (or string), as `miniwdl run --empty` (repeatable)")
    parser.add_argument("--none", metavar="NAME", action="append", default=[],
                        help="set the optional input NAME to null, over its default, as `miniwdl run --none` (repeatable)")


def add_task_argument(parser: argparse.ArgumentParser) -> None:
    """``miniwdl run --task NAME``: run one task of the document rather than its workflow (the run
    option ``task``)."""
    parser.add_argument(
        "--task", metavar="NAME", type=task_name,
        help="run the task NAME of the document, rather than its workflow, as `miniwdl run --task` (a document of "
        "several tasks and no workflow needs it); the inputs are the task's",
    )


def add_quant_check_argument(parser: argparse.ArgumentParser) -> None:
    """``miniwdl run --no-quant-check`` (the run option ``quant_check``: false)."""
    parser.add_argument(
        "--no-quant-check", action="store_true",
        help="relax the type checking of optional (?) and nonempty (+) type quantifiers, as `miniwdl run "
        "--no-quant-check` (for older WDL)",
    )


def add_import_path_argument(parser: argparse.ArgumentParser) -> None:
    """``miniwdl run -p/--path DIR``: folders where the workflow's imports are looked for after the
    importing WDL's own folder. A WDL importing from one goes as a bundle (its imports rewritten
    to where the bundle holds them, by miniwdl's own ``zip``)."""
    parser.add_argument(
        "-p", "--path", metavar="DIR", action="append", default=[], type=existing_dir,
        help="a local folder to look for the workflow's imports in (repeatable), as `miniwdl run -p`; "
        "a workflow importing from one goes as a bundle, as `miniwdl zip -p` makes it",
    )


def task_name(text: str) -> str:
    """``--task NAME``: a WDL identifier."""
    import re

    from .run_options import WDL_IDENTIFIER

    if not re.match(WDL_IDENTIFIER, text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a WDL task name (a letter, then letters, digits and _)")
    return text


def takes_late_inputs(args: argparse.Namespace) -> bool:
    """Whether the command takes INPUTS (``submit``, ``local run``), which may also come after its
    options, as ``miniwdl run`` users write them (``submit wf.wdl -i in.json x=1``): argparse
    alone gives INPUTS only the words before the first option."""
    return getattr(args, "command", None) == "submit" or (
        getattr(args, "command", None) == "local" and getattr(args, "local_command", None) == "run"
    )


#: what ``-i`` names when it is not a file: standard input
STDIN = "-"


def input_option(value: str | None, stdin: Any = None) -> str | dict[str, Any] | None:
    """``-i/--input``: a file's name as it is, or the JSON object given (``-``: read from
    ``stdin``, else the text itself when it starts with ``{``), read as an inputs file is
    (``inputs_json``: duplicate keys, NaN and the size cap refused); ValueError saying why not."""
    from . import inputs_json

    if value is None or (value != STDIN and not value.lstrip().startswith("{")):
        return value
    where = "--input - (standard input)" if value == STDIN else "--input"
    text = (stdin or sys.stdin).read() if value == STDIN else value
    try:
        return inputs_json.load_object(text, where)
    except inputs_json.InputsJSONError as exn:
        raise ValueError(str(exn)) from None


def inputs_and_assignments(
    items: list[str] | str | None, given: str | dict[str, Any] | None = None
) -> tuple[str | dict[str, Any] | None, list[str]]:
    """The inputs (a file's name, or the JSON object ``-i`` gave: ``given``) and the NAME=VALUE
    inputs among a command's positional INPUTS (a list from the parser; None or one file name from
    a caller building its own Namespace), as ``miniwdl run`` takes them: ``x=`` then ``y`` is
    ``x=y`` (shell completion of a file name after the ``=``); an item that names an existing
    file is the file, whatever it holds. ValueError if more than one file is given."""
    items = [] if items is None else [items] if isinstance(items, str) else items
    merged: list[str] = []
    for item in items:
        last = merged[-1] if merged else ""
        # (as miniwdl joins them: only where the first "=" ends the item, not a value ending in "=")
        if last and last.find("=") == len(last) - 1 and ASSIGNMENT.match(last) and not os.path.isfile(last):
            merged[-1] += item
        else:
            merged.append(item)
    files = [item for item in merged if os.path.isfile(item) or not ASSIGNMENT.match(item)]
    named = files + ([f"--input {given}" if isinstance(given, str) else "--input's JSON"] if given is not None else [])
    if len(named) > 1:
        raise ValueError(f"one inputs file at most (given: {', '.join(named)}); give other inputs as NAME=VALUE")
    return (files[0] if files else given), [item for item in merged if item not in files]


def existing_dir(text: str) -> str:
    """``--seed-s3 DIR``, ``-p DIR``: a folder that is there."""
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text}: no such folder" if not os.path.exists(text) else f"{text}: not a folder")
    return text


def existing_file(text: str) -> str:
    """``--template FILE``: a file that is there."""
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"{text}: no such file" if not os.path.exists(text) else f"{text}: not a file")
    return text


def debugging(argv: list[str] | None) -> bool:
    """Whether an unexpected error shows its traceback: ``--debug`` or MINIWDL_FARGATE_DEBUG=1."""
    args = sys.argv[1:] if argv is None else argv
    return "--debug" in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def explain(exn: BaseException) -> str:
    """One line for an error nobody anticipated: what kind, what it said, and where AWS errors
    came from."""
    import botocore.exceptions as boto

    return _aws_problem(exn, boto) or f"{exn.__class__.__name__}: {' '.join(str(exn).split()) or '(no message)'}"


#: what AWS answers a request signed more than 15 minutes before or after its own time: the
#: caller's clock is off, its credentials are fine (RequestExpired, "Common Errors":
#: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/CommonErrors.html; S3's RequestTimeTooSkewed:
#: https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html; others answer
#: InvalidSignatureException "Signature expired")
CLOCK_SKEW_CODES = ("RequestExpired", "RequestTimeTooSkewed")


def _aws_problem(exn: BaseException, boto) -> str | None:
    """What an AWS client error means for the user, or None if it is not one."""
    if isinstance(exn, boto.NoCredentialsError):
        return "no AWS credentials found: configure them (aws configure, AWS_PROFILE) or use --local"
    if isinstance(exn, boto.NoRegionError):
        return "no AWS region: give --region or set AWS_REGION"
    if isinstance(exn, boto.EndpointConnectionError):
        return f"could not reach {exn.kwargs.get('endpoint_url', 'AWS')} (for --local: is `miniwdl-fargate local up` still running?)"
    if isinstance(exn, (boto.SSOError, boto.SSOTokenLoadError, boto.UnauthorizedSSOTokenError, boto.TokenRetrievalError)):
        profile = os.environ.get("AWS_PROFILE")
        login = f"aws sso login --profile {profile}" if profile else "aws sso login (with your --profile)"
        return f"your AWS SSO session has ended or was never started ({' '.join(str(exn).split())}): run `{login}`, then again"
    if isinstance(exn, boto.ClientError):
        error = exn.response.get("Error", {})
        code = error.get("Code", "?")
        said = f"AWS {exn.operation_name}: {code}: {error.get('Message', '')}".rstrip(": ")
        if code in ("ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired"):
            return f"{said}: your AWS credentials have expired: refresh them (aws sso login, or new session keys), then again"
        if code in CLOCK_SKEW_CODES or "signature expired" in error.get("Message", "").lower():
            return f"{said}: this machine's clock is more than 15 minutes off AWS's: set it right (NTP), then again"
        return said
    if isinstance(exn, boto.BotoCoreError):
        return f"AWS: {exn}"
    return None


def guard_failure(exn: BaseException, argv: list[str] | None) -> int:
    """The last line of defence: print ``error: ...`` (the traceback too, if debugging); exit 2."""
    if debugging(argv):
        traceback.print_exception(exn)
    import botocore.exceptions as boto

    known = _aws_problem(exn, boto) is not None
    hint = "" if debugging(argv) or known else f" (unexpected: for the traceback, --debug or {DEBUG_ENV}=1)"
    print(f"error: {explain(exn)}{hint}", file=sys.stderr)
    return USAGE_ERROR
