"""Every relative link in the repository's Markdown (README.md, the other top-level pages and
docs/*.md) points at a file that exists, and a ``#anchor`` at a heading of that page; and the
module map in docs/architecture.md names every module there is."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from miniwdl_fargate.config_doc import anchor
from miniwdl_fargate.local.stack import read_template

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([*ROOT.glob("*.md"), *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"!?\[(?:[^\]`]|`[^`]*`)*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def outside_fences(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, code spans blanked out (unless they are a link's text)."""
    return [_blank_code_spans(line) for line in outside_fences(text)]


def _blank_code_spans(line: str) -> str:
    return re.sub(r"`[^`]*`", lambda m: m.group(0) if _in_link_text(line, m) else "``", line)


def _in_link_text(line: str, match: re.Match) -> bool:
    """A code span that is (part of) a link's text, as in [`driver.py`](../driver.py), is kept."""
    before = line[: match.start()]
    return before.rfind("[") > before.rfind("]")


def links(text: str) -> list[str]:
    return [target for line in prose_lines(text) for target in LINK.findall(line)]


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives the page's headings (a repeated heading gets -1, -2, ...)."""
    seen: dict[str, int] = {}
    found = set()
    for line in outside_fences(text):
        heading = re.match(r"^#{1,6} (.+?)\s*#*\s*$", line)
        if not heading:
            continue
        slug = anchor(heading.group(1))
        found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return found


def broken(page: Path) -> list[str]:
    """The relative links of ``page`` that point nowhere, each with why."""
    problems = []
    for target in links(page.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check
            continue
        path, _, fragment = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            problems.append(f"{target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest.read_text()):
            problems.append(f"{target}: no heading with that anchor")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file_and_heading_that_exist(page):
    assert broken(page) == []


def test_the_pages_are_found():
    names = {str(p.relative_to(ROOT)) for p in PAGES}
    assert {"README.md", "docs/architecture.md", "docs/configuration.md", "docs/deploy.md",
            "docs/security.md", "docs/local-mode.md", "docs/CONTRACTS.md", "docs/usage.md"} <= names


def test_the_checker_finds_a_missing_file_and_a_missing_anchor(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## A section, with `code`\n\n```\n# not a heading\n```\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md#a-section-with-code) [ok](#page) [web](https://example.com/x#y)\n"
        "[gone](nowhere.md) [no anchor](other.md#not-a-heading) `[in code](nowhere.md)`\n"
        "```\n[in a fence](nowhere.md)\n```\n"
    )
    assert broken(page) == ["nowhere.md: no such file", "other.md#not-a-heading: no heading with that anchor"]


def test_a_repeated_heading_gets_a_numbered_anchor():
    assert anchors("# A\n## Notes\n## Notes\n") == {"a", "notes", "notes-1"}


def test_the_module_map_names_every_module():
    """docs/architecture.md links every module of plugin/miniwdl_fargate and functions/ (empty
    ``__init__.py`` files aside): a new module gets its line in the map."""
    mapped = set(links((ROOT / "docs" / "architecture.md").read_text()))
    modules = [
        p for p in [*(ROOT / "plugin" / "miniwdl_fargate").rglob("*.py"), *(ROOT / "functions").glob("*.py")]
        if p.stat().st_size and "__pycache__" not in p.parts
    ]
    missing = [str(p.relative_to(ROOT)) for p in modules if f"../{p.relative_to(ROOT)}" not in mapped]
    assert missing == [], "add these to the module map in docs/architecture.md"


def first_column_names(page: Path, header: str) -> set[str]:
    """The `names` in the first column of the table whose header row starts with ``| header |``."""
    names: set[str] = set()
    rows = iter(page.read_text().splitlines())
    for line in rows:
        if line.startswith(f"| {header} |"):
            next(rows)  # |---|---|
            for row in rows:
                if not row.startswith("|"):
                    break
                names |= set(re.findall(r"`([A-Za-z0-9]+)`", row.split("|")[1]))
    return names


def test_deploy_md_describes_every_parameter_and_output_of_the_stack():
    template = read_template(ROOT / "template.yaml")
    deploy = ROOT / "docs" / "deploy.md"
    assert first_column_names(deploy, "parameter") == set(template["Parameters"])
    assert first_column_names(deploy, "output") == set(template["Outputs"])


def test_contracts_md_lists_every_parameter_and_output_of_the_stack():
    template = read_template(ROOT / "template.yaml")
    text = (ROOT / "docs" / "CONTRACTS.md").read_text()
    section = text[text.index("## Stack parameters"):]
    section = section[: section.index("\n## ", 1)]
    parameters, _, outputs = section.partition("\nOutputs:")
    assert set(re.findall(r"`([A-Za-z0-9]+)`", parameters)) >= set(template["Parameters"])
    assert set(re.findall(r"`([A-Za-z0-9]+)`", outputs)) == set(template["Outputs"])


def test_contracts_md_names_every_setting_the_driver_is_given():
    """The driver container's ``MINIWDL__AWS_FARGATE__*`` variables in template.yaml, each named
    in CONTRACTS.md's list of them (``__NAME``)."""
    text = (ROOT / "docs" / "CONTRACTS.md").read_text()
    block = text[text.index("MINIWDL__AWS_FARGATE__CLUSTER"):]
    block = block[: block.index("```")].replace("MINIWDL__AWS_FARGATE__", "__")
    listed = set(re.findall(r"__([A-Z_]+)\b", block))
    given = set(re.findall(r"MINIWDL__AWS_FARGATE__([A-Z_]+)", (ROOT / "template.yaml").read_text()))
    assert given - listed == set()


def table_shape_problems(text: str) -> list[str]:
    """Table rows with another number of cells than their header row. GitHub splits a row at every
    ``|`` not escaped as ``\\|``, inside code spans too (GFM spec, "Tables (extension)":
    https://github.github.com/gfm/#tables-extension-)."""
    problems, header = [], None
    for line in outside_fences(text):
        if not line.startswith("|"):
            header = None
            continue
        cells = len(re.split(r"(?<!\\)\|", line.strip().strip("|")))
        if header is None:
            header = cells
        elif cells != header:
            problems.append(f"{cells} cells, not {header}: {line[:80]}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_table_row_has_its_headers_cells(page):
    assert table_shape_problems(page.read_text()) == []


def test_a_pipe_in_a_code_span_splits_a_row_unless_escaped():
    table = "| a | b |\n|---|---|\n| `x\\|y` | z |\n| `x|y` | z |\n"
    assert table_shape_problems(table) == ["3 cells, not 2: | `x|y` | z |"]


def test_the_command_line_users_policy_in_security_md_is_one_iam_takes():
    """The policy a reader pastes: JSON, each statement with only the elements IAM knows (a
    "Comment" makes IAM refuse the whole policy), a Sid of letters and digits, each Sid once."""
    text = (ROOT / "docs" / "security.md").read_text()
    section = text[text.index("## Who uses the command line needs"):]
    policy = json.loads(section[section.index("```json") + len("```json"): section.index("```", section.index("```json") + 7)])
    assert policy["Version"] == "2012-10-17"
    sids = [statement["Sid"] for statement in policy["Statement"]]
    assert len(sids) == len(set(sids)) and all(re.fullmatch(r"[A-Za-z0-9]+", sid) for sid in sids)
    for statement in policy["Statement"]:
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}, statement["Sid"]
        assert statement["Effect"] == "Allow" and statement["Action"] and statement["Resource"]
