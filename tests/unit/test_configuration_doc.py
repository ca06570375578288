"""The packaged aws_fargate.cfg, the settings class that reads it and docs/configuration.md agree:
every option in each, the same defaults, and the page generated from the cfg as it is now."""

import logging
import re
import types
import typing
from dataclasses import fields
from pathlib import Path

from WDL.runtime import config as wdl_config

from miniwdl_fargate import config, config_doc

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
# a row of the page's table: | [`name`](#anchor) | `ENV` | type | `default` or (empty) |
ROW = re.compile(r"^\| \[`([a-z_0-9]+)`\]\(#([\w-]+)\) \| `([A-Z_0-9]+)` \| ([^|]+) \| (`[^`]*`|\(empty\)) \|$")


def cfg_defaults() -> dict[str, str]:
    return config_doc.parse_cfg(config.default_cfg_text()).defaults()


def settings_options() -> list[str]:
    return [f.name for f in fields(config.FargateSettings)]


def page_rows() -> dict[str, tuple[str, str, str, str]]:
    rows = [ROW.match(line) for line in PAGE.read_text().splitlines()]
    return {m.group(1): m.groups()[1:] for m in rows if m}


def test_the_cfg_and_the_settings_class_have_the_same_options():
    assert sorted(cfg_defaults()) == sorted(settings_options())


def test_the_parsed_cfg_has_what_configparser_reads():
    """parse_cfg (which also keeps the comments) finds the same options and values configparser does."""
    assert cfg_defaults() == config._defaults()


def test_every_option_is_commented():
    for group in config_doc.parse_cfg(config.default_cfg_text()).groups:
        assert any(line.strip() for line in group.comment), f"no comment above {list(group.defaults)}"


def test_every_default_parses_as_its_declared_type():
    loader = wdl_config.Loader(logging.getLogger("test"), filenames=[])
    hints = typing.get_type_hints(config.FargateSettings)
    for name in settings_options():
        value = config.option(loader, name)
        hint = hints[name]
        expected = hint if isinstance(hint, types.UnionType) else (typing.get_origin(hint) or hint)
        assert isinstance(value, expected), f"{name}: default {value!r} is not a {hints[name]}"


def test_every_type_of_the_settings_class_has_a_name_on_the_page():
    assert set(config_doc.option_types().values()) <= set(config_doc.TYPE_NAMES)


def test_the_page_lists_every_option_with_its_default_and_environment_variable():
    rows = page_rows()
    assert sorted(rows) == sorted(settings_options())
    for name, default in cfg_defaults().items():
        _, env, _, shown = rows[name]
        assert env == f"MINIWDL__AWS_FARGATE__{name.upper()}"
        assert shown == (f"`{default}`" if default else "(empty)"), name


def test_every_option_has_its_section_on_the_page():
    anchors = {config_doc.anchor(line[3:]) for line in PAGE.read_text().splitlines() if line.startswith("## ")}
    for name, (target, *_) in page_rows().items():
        assert target in anchors, name
        assert name in target


def test_the_page_is_generated_from_the_cfg_as_it_is():
    assert PAGE.read_text() == config_doc.render(), "docs/configuration.md is out of date: run `make docs`"


def test_the_cfg_comments_become_markdown():
    parsed = config_doc.parse_cfg(
        "# Intro, with <angle> brackets and `a <code> span`.\n\n[aws_fargate]\n"
        "# One option.\none = 1\n# Two options, one comment:\n#   {\"example\": true}\ntwo = \nthree = x\n"
    )
    assert [group.defaults for group in parsed.groups] == [{"one": "1"}, {"two": "", "three": "x"}]
    assert config_doc._prose(parsed.header) == ["Intro, with &lt;angle> brackets and `a <code> span`."]
    assert config_doc._prose(parsed.groups[1].comment) == ["Two options, one comment:", "```", '{"example": true}', "```"]


def test_anchors_are_githubs():
    assert config_doc.anchor("`default_cpu_shares`, `default_memory_mb`") == "default_cpu_shares-default_memory_mb"
    assert config_doc.anchor("Input files, hard links and EFS's limits") == "input-files-hard-links-and-efss-limits"
    assert config_doc.anchor("Configuration: `[aws_fargate]`") == "configuration-aws_fargate"
    assert config_doc.anchor("This -- Is__A_Test!") == "this----is__a_test"
