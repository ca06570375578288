"""``stack.read_template``: a SAM template read as aws-sam-translator's ``yaml_parse`` reads it,
on libyaml's parser."""

import pytest
import yaml
from samtranslator.yaml_helper import yaml_parse

from miniwdl_fargate.local import stack

TEMPLATE = stack.repo_root() / "template.yaml"

SHORT_FORMS = """\
Parameters:
  Size: {Type: Number, Default: 2}
Conditions:
  Big: !Equals [!Ref Size, 4]
Resources:
  Bucket:
    Type: AWS::S3::Bucket
    Condition: Big
    Properties:
      BucketName: !Sub "b-${AWS::Region}"
      Tags:
        - Key: arn
          Value: !GetAtt Role.Arn
        - Key: joined
          Value: !Join [",", [!Select [0, !GetAZs ""], !If [Big, "x", !Ref "AWS::NoValue"]]]
        - Key: mapped
          Value: !Sub
            - "${A}-${B}"
            - {A: !ImportValue other, B: !FindInMap [M, !Ref "AWS::Region", key]}
"""


def test_the_repositorys_template_reads_as_sams_translator_reads_it():
    assert stack.read_template(TEMPLATE) == yaml_parse(TEMPLATE.read_text())


def test_the_short_forms_of_the_intrinsic_functions_read_as_their_long_forms(tmp_path):
    path = tmp_path / "template.yaml"
    path.write_text(SHORT_FORMS)
    read = stack.read_template(path)
    assert read == yaml_parse(SHORT_FORMS)
    assert read["Conditions"]["Big"] == {"Fn::Equals": [{"Ref": "Size"}, 4]}
    tags = read["Resources"]["Bucket"]["Properties"]["Tags"]
    assert tags[0]["Value"] == {"Fn::GetAtt": ["Role", "Arn"]}
    assert tags[2]["Value"]["Fn::Sub"][1]["B"] == {"Fn::FindInMap": ["M", {"Ref": "AWS::Region"}, "key"]}


def test_it_reads_with_libyaml_and_leaves_pyyamls_own_loaders_as_they_were(tmp_path, monkeypatch):
    """The parser is libyaml's where PyYAML has it (the pure-Python one was a tenth as fast); and
    unlike ``yaml_parse``, which adds its tags to ``yaml.SafeLoader`` itself, nothing is added to
    a loader of PyYAML's: a ``yaml.safe_load`` elsewhere still refuses an unknown tag."""
    assert yaml.__with_libyaml__, "PyYAML without libyaml: read_template falls back to the pure-Python loader"
    path = tmp_path / "template.yaml"
    path.write_text(SHORT_FORMS)
    # (yaml_parse, called before in this process, may have added its tags: start without them)
    monkeypatch.setattr(yaml.SafeLoader, "yaml_multi_constructors", dict(yaml.SafeLoader.yaml_multi_constructors))
    yaml.SafeLoader.yaml_multi_constructors.pop("!", None)
    before = dict(yaml.SafeLoader.yaml_multi_constructors)
    used, real_load = [], yaml.load
    monkeypatch.setattr(yaml, "load", lambda stream, Loader: used.append(Loader) or real_load(stream, Loader=Loader))
    stack.read_template(path)
    assert used and all(issubclass(loader, yaml.CSafeLoader) for loader in used)
    assert yaml.SafeLoader.yaml_multi_constructors == before
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.safe_load("a: !Ref b")


def test_a_template_that_is_not_yaml_raises_a_yaml_error_saying_where(tmp_path):
    path = tmp_path / "template.yaml"
    path.write_text("Resources:\n  Bucket: {Type: AWS::S3::Bucket\n")
    with pytest.raises(yaml.YAMLError) as raised:
        stack.read_template(path)
    assert "line 3" in str(raised.value)


def test_without_libyaml_it_reads_with_sams_own_reader(monkeypatch):
    monkeypatch.setattr(yaml, "__with_libyaml__", False)
    monkeypatch.setattr(yaml.SafeLoader, "yaml_multi_constructors", dict(yaml.SafeLoader.yaml_multi_constructors))
    read = stack.read_template(TEMPLATE)
    assert read == yaml_parse(TEMPLATE.read_text()) and read["Resources"]
