"""``s3io.split``: an S3 URI is ``s3://BUCKET/KEY`` with the key as written, not a URL."""

import pytest

from miniwdl_fargate import s3io


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("s3://bucket/key.txt", ("bucket", "key.txt")),
        ("s3://bucket/a/b/c.txt", ("bucket", "a/b/c.txt")),
        ("s3://bucket/out/h#1.txt", ("bucket", "out/h#1.txt")),  # urlparse: a fragment, cut off
        ("s3://bucket/out/q?.txt", ("bucket", "out/q?.txt")),  # urlparse: a query, cut off
        ("s3://bucket/a?b#c;d.txt", ("bucket", "a?b#c;d.txt")),
        ("s3://bucket/100%25 sure.txt", ("bucket", "100%25 sure.txt")),  # not percent-decoded
        ("s3://bucket/dir/", ("bucket", "dir/")),
        ("s3://bucket/", ("bucket", "")),
        ("s3://bucket", ("bucket", "")),
        ("S3://bucket/k", ("bucket", "k")),
        ("s3://bucket/Ünïcødé 日本.txt", ("bucket", "Ünïcødé 日本.txt")),
    ],
)
def test_the_key_is_everything_after_the_buckets_slash(uri, expected):
    assert s3io.split(uri) == expected
    if expected[1]:
        assert s3io.split(s3io.uri(*expected)) == expected


@pytest.mark.parametrize("uri", ["s3:/bucket/k", "s3:///k", "https://bucket/k", "bucket/k", "", "s3://"])
def test_what_is_not_an_s3_uri_is_refused(uri):
    with pytest.raises(s3io.S3URIError, match="not an s3:// URI"):
        s3io.split(uri)


@pytest.mark.parametrize("rel, placeable", [
    ("a.txt", True), ("sub/b.txt", True), (".hidden", True), ("a..b", True),
    ("/b.txt", False), ("sub//b.txt", False), ("./b.txt", False), ("sub/../b.txt", False), ("..", False),
    # EFS's file names are at most 255 bytes (S3's key parts up to 1,024): UTF-8 bytes, not characters
    ("sub/" + "x" * 255, True), ("sub/" + "x" * 256, False), ("é" * 127 + "/b.txt", True), ("é" * 128 + "/b.txt", False),
])
def test_a_key_below_a_directory_has_a_path_of_its_own_or_is_said_not_to(rel, placeable):
    """S3 keys are flat strings: an empty, '.' or '..' part has no file path (it would land on
    another object's path, or outside the folder)."""
    assert (s3io.path_problem(rel) is None) == placeable
