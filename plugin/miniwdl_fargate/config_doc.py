"""docs/configuration.md, generated from the packaged ``aws_fargate.cfg`` (``make docs``).

The cfg is the one place the ``[aws_fargate]`` options are described: its header comment becomes
the page's introduction, and each comment block with the option line(s) under it one section.
Each option's type comes from the settings class (``config.FargateSettings``), its default from
the cfg. ``python -m miniwdl_fargate.config_doc`` prints the page;
``tests/unit/test_configuration_doc.py`` checks the cfg, the settings class and the page agree.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field, fields

from .config import RUN_CFG_REFUSED, SECTION, FargateSettings, default_cfg_text

SOURCE = "plugin/miniwdl_fargate/aws_fargate.cfg"

#: how the page names each type of the settings class's fields (a new type must be named here)
TYPE_NAMES = {
    "str": "text",
    "list[str]": "list: comma-separated, or a JSON list",
    "bool": "true or false",
    "int": "whole number",
    "int | None": "whole number, or empty",
    "float": "number",
    "Prices": "JSON object, or the path of a JSON file",
    "dict[str, str]": "JSON object, or comma-separated key=value pairs",
    "bool | str": "true, false, read or write",
}

_OPTION_LINE = re.compile(r"^([a-z_][a-z0-9_]*)\s*=\s*(.*)$")


@dataclass
class Group:
    """Options the cfg describes under one comment block: their names, defaults and the comment."""

    comment: list[str]
    defaults: dict[str, str] = field(default_factory=dict)


@dataclass
class ParsedCfg:
    """The packaged cfg as the page shows it: the header comment and the groups, in order."""

    header: list[str]
    groups: list[Group]

    def defaults(self) -> dict[str, str]:
        return {name: value for group in self.groups for name, value in group.defaults.items()}



def _refused_in_a_run() -> list[str]:
    """``config.RUN_CFG_REFUSED`` as lines of the page: each section and its options."""
    parts = [
        f"`[{section}]` " + ("(all of it)" if names is None else ", ".join(f"`{n}`" for n in sorted(names)))
        for section, names in RUN_CFG_REFUSED.items()
    ]
    return [part + (";" if i < len(parts) - 1 else ".") for i, part in enumerate(parts)]


def parse_cfg(text: str) -> ParsedCfg:
    """The header (comments before ``[aws_fargate]``) and each comment block with its options."""
    header: list[str] = []
    groups: list[Group] = []
    comment: list[str] = []
    in_section = False
    for line in text.splitlines():
        stripped = line.strip()
        option = _OPTION_LINE.match(stripped) if in_section else None
        if stripped == f"[{SECTION}]":
            header, comment, in_section = comment, [], True
        elif stripped.startswith("#"):
            comment.append(stripped[1:])
        elif option:
            if comment or not groups:
                groups.append(Group(comment))
                comment = []
            groups[-1].defaults[option.group(1)] = option.group(2).strip()
        elif not stripped and not in_section:
            comment.append("")
    return ParsedCfg(header, groups)


def option_types() -> dict[str, str]:
    """Each option of the settings class and its type as the class declares it."""
    return {f.name: str(f.type) for f in fields(FargateSettings)}


def anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation other than ``-`` and
    ``_`` dropped (markup's backticks included), each space a hyphen; a repeated heading's anchor
    gets ``-1``, ``-2``... (not done here). GitHub's "Section links":
    https://docs.github.com/en/get-started/writing-on-github/getting-started-with-writing-and-formatting-on-github/basic-writing-and-formatting-syntax#section-links
    (e.g. ``This -- Is__A_Test!`` is ``this----is__a_test``, as GitHub's slugger gives it)."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def render() -> str:
    """The whole page."""
    parsed = parse_cfg(default_cfg_text())
    types = option_types()
    lines = [
        f"<!-- Generated from {SOURCE} by `make docs`: edit the cfg, not this page. -->",
        f"# Configuration: `[{SECTION}]`",
        "",
        *_prose(parsed.header),
        "",
        "`miniwdl-fargate config` prints the same file. In the serverless stack the driver's task",
        "definition sets these options as environment variables (see [deploy.md](deploy.md)); a",
        "`miniwdl.cfg` in a run's workflow folder may set others for that run (see",
        "[architecture.md](architecture.md#call-cache)), but not what the stack owns (where and how",
        "tasks run, what runs share, what would let a run read another's files), refused at submit:",
        *_refused_in_a_run(),
        "",
        "| option | environment variable | type | default |",
        "|---|---|---|---|",
    ]
    for group in parsed.groups:
        target = anchor(_heading(group))
        for name, default in group.defaults.items():
            shown = f"`{default}`" if default else "(empty)"
            lines.append(f"| [`{name}`](#{target}) | `{env_var(name)}` | {TYPE_NAMES[types[name]]} | {shown} |")
    for group in parsed.groups:
        lines += ["", f"## {_heading(group)}", "", *_prose(group.comment)]
    return "\n".join(lines).rstrip() + "\n"


def env_var(name: str) -> str:
    return f"MINIWDL__{SECTION.upper()}__{name.upper()}"


def _heading(group: Group) -> str:
    return ", ".join(f"`{name}`" for name in group.defaults)


def _prose(comment: list[str]) -> list[str]:
    """Comment lines as Markdown: paragraphs as they are (``<`` escaped outside code spans), lines
    indented by three or more spaces (an example) as a code block."""
    out: list[str] = []
    text: list[str] = []
    code: list[str] = []
    for raw in comment + [""]:
        if raw.startswith("   "):
            code.append(raw[3:])
            continue
        if code:
            out += [*_escape_html("\n".join(text)).split("\n"), "```", *code, "```"]
            text, code = [], []
        text.append(raw.strip())
    out += _escape_html("\n".join(text)).split("\n")
    while out and not out[0]:
        out.pop(0)
    while out and not out[-1]:
        out.pop()
    return out


def _escape_html(text: str) -> str:
    """``<`` outside code spans as ``&lt;``: Markdown takes ``<name>`` for an HTML tag and hides it."""
    parts = text.split("`")
    return "`".join(part if i % 2 else part.replace("<", "&lt;") for i, part in enumerate(parts))


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
