"""Image references and the image cache: a task's image rewritten to an ECR pull-through cache.

``[aws_fargate] image_cache`` holds ``upstream=prefix`` pairs, comma-separated, e.g.
``docker.io=123456789012.dkr.ecr.us-east-1.amazonaws.com/docker-hub``: an image whose registry is
an upstream is pulled as ``<prefix>/<repository>`` instead (an ECR pull-through cache rule's
repository prefix; ECR fetches it from the upstream once, and later pulls stay in the account:
https://docs.aws.amazon.com/AmazonECR/latest/userguide/pull-through-cache-working.html: Docker
Hub's official images keep their ``library/``). An image whose
registry has no rule is run as given.

References are read the way Docker reads them (its ``docker/reference`` grammar): the first
path component is a registry host only when it has a ``.`` or a ``:`` or is ``localhost``;
otherwise the registry is Docker Hub, ``docker.io`` (also spelled ``index.docker.io`` and
``registry-1.docker.io``), and a one-component repository there is ``library/<name>``. The tag is
``latest`` unless a tag or a digest is given; a digest is kept as is (with its tag, if both).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

DOCKER_HUB = "docker.io"
#: other names of Docker Hub's registry
DOCKER_HUB_ALIASES = ("index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")
OPTION = "[aws_fargate] image_cache (or MINIWDL__AWS_FARGATE__IMAGE_CACHE)"

_HOST = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?$")
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$", re.ASCII)
_DIGEST = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$")


#: what ECS runs as a container's image (API_ContainerDefinition, ``image``: "For images using tags
#: (repository-url/image:tag), up to 255 characters total are allowed, including letters (uppercase
#: and lowercase), numbers, hyphens, underscores, colons, periods, forward slashes, and number signs
#: (#). For images using digests (repository-url/image@digest), the 255 character limit applies
#: only to the repository URL and image name (everything before the @ sign). The only supported hash
#: function is sha256, and the hash value after sha256: must be exactly 64 characters")
ECS_IMAGE_MAX_CHARS = 255
_ECS_IMAGE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_:./#")
_ECS_DIGEST = re.compile(r"^sha256:[0-9a-fA-F]{64}$")


#: how WDL 1.1's ``container`` may name a Docker image, as a URI
DOCKER_URI = "docker://"


def wdl_image(value: str) -> str:
    """The image a WDL ``docker``/``container`` value names: spaces around it dropped ("ubuntu:22.04 "
    as a WDL may write it: ECS takes no spaces), and a ``docker://`` URI's scheme (WDL 1.1's
    example of a container URI, https://github.com/openwdl/wdl/blob/wdl-1.1/SPEC.md#container:
    ECS would take the whole for a repository name and fail its pull)."""
    image = str(value).strip()
    return image[len(DOCKER_URI):] if image.startswith(DOCKER_URI) else image


#: a WDL ``container`` that lets the engine choose (WDL 1.2: "any POSIX-compliant operating
#: environment"): the configured default image, as "" is
ANY_IMAGE = "*"


def chosen_image(value: Any) -> str:
    """The image to run of a task's ``container``/``docker`` value (as JSON: a string, or an array
    of alternatives): the first that ECS can pull (``wdl_image``: a Docker reference or
    ``docker://`` URI), skipping ``*`` and URIs of other protocols, which WDL says an engine
    ignores (https://github.com/openwdl/wdl/blob/wdl-1.1/SPEC.md#container: the order implies no
    preference); "" for the configured default image (none given, or ``*`` beside no image ECS
    can pull). An array of other protocols only gives its first, which the image checks then
    refuse by name."""
    given = [str(v) for v in (value if isinstance(value, list) else [value]) if v is not None]
    images = [wdl_image(v) for v in given]
    runnable = [i for i in images if i and i != ANY_IMAGE and "://" not in i]
    if runnable:
        return runnable[0]
    if ANY_IMAGE in images or "" in images:  # (any environment will do: none of the URIs is needed)
        return ""
    return next((i for i in images if "://" in i), "")


def ecs_image_problem(image: str) -> str | None:
    """What makes ``image`` one ECS refuses to register as a container's image, or None. Docker's
    grammar (``parse_reference``) takes more: other digest algorithms, tags beyond ASCII letters,
    any length."""
    name, at, digest = image.partition("@")
    if not name:
        return "it names no repository"
    if len(name) > ECS_IMAGE_MAX_CHARS:
        return (f"it is {len(name)} characters{' before its digest' if at else ''}, where ECS takes at most "
                f"{ECS_IMAGE_MAX_CHARS}")
    bad = sorted({c for c in name if c not in _ECS_IMAGE_CHARS})
    if bad:
        shown = ", ".join(repr(c) for c in bad[:5])
        return f"it has {shown}: ECS takes letters, digits and - _ : . / # only"
    if at and not _ECS_DIGEST.match(digest):
        return f"its digest {digest!r} is not one ECS takes (sha256: and exactly 64 hex digits)"
    return None


class ImageReferenceError(ValueError):
    """Not an image reference Docker would accept."""


@dataclass(frozen=True)
class Reference:
    """An image reference, normalised: ``registry`` (``docker.io`` for Docker Hub), ``repository``
    (``library/ubuntu``), ``tag`` (``latest`` when neither tag nor digest was given) and ``digest``."""

    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    def suffix(self) -> str:
        """``:tag``, ``@digest`` or both, as the reference ends."""
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}{self.suffix()}"


def parse_reference(image: str) -> Reference:
    """``image`` read as Docker reads it (see the module's doc), or ImageReferenceError."""
    text = image.strip()
    if not text or any(c.isspace() for c in text):
        raise ImageReferenceError(f"not an image reference: {image!r}")
    name, _, digest = text.partition("@")
    if digest and not _DIGEST.match(digest):
        raise ImageReferenceError(f"{image!r}: {digest!r} is not a digest (e.g. sha256:<64 hex digits>)")
    tag = ""
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > last_slash:  # a colon after the last slash separates the tag (one before it is a port)
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG.match(tag):
            raise ImageReferenceError(f"{image!r}: {tag!r} is not a tag")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
        if not _HOST.match(registry):
            raise ImageReferenceError(f"{image!r}: {registry!r} is not a registry host")
    else:
        registry, path = DOCKER_HUB, name
    registry = DOCKER_HUB if registry in DOCKER_HUB_ALIASES else registry
    components = path.split("/")
    if not all(_PATH_COMPONENT.match(c) for c in components):
        raise ImageReferenceError(f"{image!r}: {path!r} is not a repository name (lowercase letters, digits, . _ -)")
    if registry == DOCKER_HUB and len(components) == 1:
        path = f"library/{path}"
    if not tag and not digest:
        tag = "latest"
    return Reference(registry, path, tag, digest)


def parse_rules(text: str) -> dict[str, str]:
    """``image_cache``'s ``upstream=prefix`` pairs (comma-separated; empty: none), by upstream
    registry (Docker Hub's other names count as ``docker.io``). ValueError naming the bad pair."""
    rules: dict[str, str] = {}
    for pair in (p.strip() for p in text.split(",")):
        if not pair:
            continue
        upstream, equals, prefix = (part.strip() for part in pair.partition("="))
        if not equals or not upstream or not prefix:
            raise ValueError(f"{pair!r} is not upstream=prefix (e.g. docker.io=123456789012.dkr.ecr.us-east-1.amazonaws.com/docker-hub)")
        if not _HOST.match(upstream):
            raise ValueError(f"{pair!r}: {upstream!r} is not a registry host (e.g. docker.io, quay.io, ghcr.io)")
        host, _, path = prefix.rstrip("/").partition("/")
        if not _HOST.match(host) or "." not in host or (path and not all(_PATH_COMPONENT.match(c) for c in path.split("/"))):
            raise ValueError(f"{pair!r}: {prefix!r} is not a registry host and repository prefix (e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/quay)")
        upstream = DOCKER_HUB if upstream in DOCKER_HUB_ALIASES else upstream
        if upstream in rules:
            raise ValueError(f"{pair!r}: a second rule for {upstream}")
        rules[upstream] = prefix.rstrip("/")
    return rules


def checked_rules_text(text: str) -> str:
    """``image_cache`` as given, once ``parse_rules`` accepts it (the settings keep the text)."""
    parse_rules(text)
    return text.strip()


def cached_image(image: str, rules: dict[str, str]) -> str:
    """``image`` as pulled through the cache: ``<prefix>/<repository><:tag|@digest>`` where its
    registry has a rule, else ``image`` unchanged (also when it is not a reference Docker reads:
    the pull then fails as it would have)."""
    if not rules:
        return image
    try:
        ref = parse_reference(image)
    except ImageReferenceError:
        return image
    prefix = rules.get(ref.registry)
    if prefix is None:
        return image
    return f"{prefix}/{ref.repository}{ref.suffix()}"
