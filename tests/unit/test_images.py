"""Image references read as Docker reads them, and rewritten to an ECR pull-through cache."""

import logging

import pytest
from WDL.runtime import config as wdl_config

from miniwdl_fargate import images
from miniwdl_fargate.config import FargateSettings
from miniwdl_fargate.images import Reference, cached_image, parse_reference, parse_rules

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
DIGEST = "sha256:" + "ab" * 32
RULES = parse_rules(f"docker.io={ECR}/docker-hub, quay.io={ECR}/quay,ghcr.io={ECR}/github/")


@pytest.mark.parametrize(
    "image, expected",
    [
        ("ubuntu", Reference("docker.io", "library/ubuntu", "latest")),
        ("ubuntu:22.04", Reference("docker.io", "library/ubuntu", "22.04")),
        ("biocontainers/bwa:0.7.17", Reference("docker.io", "biocontainers/bwa", "0.7.17")),
        ("docker.io/library/ubuntu:22.04", Reference("docker.io", "library/ubuntu", "22.04")),
        ("docker.io/ubuntu", Reference("docker.io", "library/ubuntu", "latest")),
        ("index.docker.io/ubuntu:22.04", Reference("docker.io", "library/ubuntu", "22.04")),
        ("registry-1.docker.io/biocontainers/bwa", Reference("docker.io", "biocontainers/bwa", "latest")),
        (
            "quay.io/biocontainers/samtools:1.17--h00cdaf9_0",
            Reference("quay.io", "biocontainers/samtools", "1.17--h00cdaf9_0"),
        ),
        ("public.ecr.aws/lts/ubuntu:22.04", Reference("public.ecr.aws", "lts/ubuntu", "22.04")),
        (f"ghcr.io/owner/img@{DIGEST}", Reference("ghcr.io", "owner/img", "", DIGEST)),
        (f"ubuntu:22.04@{DIGEST}", Reference("docker.io", "library/ubuntu", "22.04", DIGEST)),
        ("localhost:5000/tools/x:1", Reference("localhost:5000", "tools/x", "1")),
        ("localhost/x", Reference("localhost", "x", "latest")),
        ("registry.example.org:8443/a/b/c", Reference("registry.example.org:8443", "a/b/c", "latest")),
    ],
)
def test_references_are_normalised_as_docker_does(image, expected):
    assert parse_reference(image) == expected


@pytest.mark.parametrize("image", ["", "Ubuntu", "ubuntu:", "ubuntu@sha256:12", "a b", "ubuntu:bad/tag", "x/:1", "ubuntu:café"])
def test_what_docker_would_refuse_is_an_error_naming_the_reference(image):
    with pytest.raises(images.ImageReferenceError):
        parse_reference(image)


@pytest.mark.parametrize(
    "image, expected",
    [
        ("ubuntu:22.04", f"{ECR}/docker-hub/library/ubuntu:22.04"),
        ("ubuntu", f"{ECR}/docker-hub/library/ubuntu:latest"),
        ("biocontainers/bwa:0.7.17", f"{ECR}/docker-hub/biocontainers/bwa:0.7.17"),
        ("registry-1.docker.io/library/ubuntu:22.04", f"{ECR}/docker-hub/library/ubuntu:22.04"),
        ("quay.io/biocontainers/samtools:1.17--h00cdaf9_0", f"{ECR}/quay/biocontainers/samtools:1.17--h00cdaf9_0"),
        (f"ghcr.io/owner/img@{DIGEST}", f"{ECR}/github/owner/img@{DIGEST}"),
        # no rule for the registry, or not a reference at all: unchanged
        ("public.ecr.aws/lts/ubuntu:22.04", "public.ecr.aws/lts/ubuntu:22.04"),
        (f"{ECR}/mine:1", f"{ECR}/mine:1"),
        ("Not An Image", "Not An Image"),
    ],
)
def test_an_image_from_an_upstream_is_pulled_through_its_cache(image, expected):
    assert cached_image(image, RULES) == expected


def test_no_rules_change_nothing():
    assert parse_rules("") == {} and parse_rules(" , ") == {}
    assert cached_image("ubuntu:22.04", {}) == "ubuntu:22.04"


def test_docker_hubs_other_names_are_one_upstream():
    assert parse_rules(f"registry-1.docker.io={ECR}/hub") == {"docker.io": f"{ECR}/hub"}


@pytest.mark.parametrize(
    "text, problem",
    [
        ("docker.io", "is not upstream=prefix"),
        (f"={ECR}/x", "is not upstream=prefix"),
        ("docker.io=", "is not upstream=prefix"),
        (f"not a host={ECR}/x", "is not a registry host"),
        ("docker.io=docker-hub", "is not a registry host and repository prefix"),
        (f"docker.io={ECR}/Hub", "is not a registry host and repository prefix"),
        (f"docker.io={ECR}/a,index.docker.io={ECR}/b", "a second rule for docker.io"),
    ],
)
def test_a_bad_rule_says_which_pair_and_why(text, problem):
    with pytest.raises(ValueError, match=problem):
        parse_rules(text)


def test_a_bad_image_cache_setting_fails_naming_the_option(monkeypatch):
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__IMAGE_CACHE", "docker.io")
    with pytest.raises(ValueError, match=r"image_cache \(or MINIWDL__AWS_FARGATE__IMAGE_CACHE\): 'docker.io' is not upstream=prefix"):
        FargateSettings.from_cfg(wdl_config.Loader(logging.getLogger("test"), filenames=[]))


def test_the_settings_give_the_rules_and_capacities(monkeypatch):
    def load(**env):
        for key, value in env.items():
            monkeypatch.setenv(f"MINIWDL__AWS_FARGATE__{key.upper()}", value)
        return FargateSettings.from_cfg(wdl_config.Loader(logging.getLogger("test"), filenames=[]))

    s = load(image_cache=f"quay.io={ECR}/quay")
    assert s.image_rules() == {"quay.io": f"{ECR}/quay"}
    # without a capacity provider the managed-instances limits do not count; without a role, no EBS
    assert s.capacities().managed_instances.max_cpu == 0 and not s.capacities().ebs_scratch
    s = load(managed_instances_capacity_provider="mi", managed_instances_max_gpus="4", ebs_volume_role="arn:aws:iam::1:role/v")
    limits = s.capacities().managed_instances
    # GPUs count only with a GPU capacity provider (the CPU-only one's instances have none)
    assert (limits.max_cpu, limits.max_memory_gib, limits.max_gpus) == (64, 512, 0)
    assert s.capacities().ebs_scratch
    s = load(managed_instances_gpu_capacity_provider="mi-gpu")
    limits = s.capacities().managed_instances
    assert (limits.max_cpu, limits.max_memory_gib, limits.max_gpus) == (64, 512, 4)
    # a task's providers (On-Demand, Spot): the GPU ones for any GPU count, the CPU-only ones for none
    s = load(managed_instances_spot_capacity_provider="mi-spot", managed_instances_gpu_spot_capacity_provider="mi-gpu-spot")
    assert [s.managed_instances_providers(n) for n in (0, 1, 4)] == [("mi", "mi-spot"), ("mi-gpu", "mi-gpu-spot"), ("mi-gpu", "mi-gpu-spot")]


@pytest.mark.parametrize("image, problem", [
    ("ubuntu:22.04", None),
    (f"quay.io/biocontainers/samtools:1.17--h00cdaf9_0@{DIGEST}", None),
    ("a/" * 126 + "b:1", None),  # (255 characters)
    ("a/" * 126 + "bc:1", "it is 256 characters, where ECS takes at most 255"),
    ("a/" * 126 + f"bcd@{DIGEST}", None),
    ("a/" * 126 + f"bcde@{DIGEST}", "it is 256 characters before its digest, where ECS takes at most 255"),
    ("ubuntu:22.04 ", "it has ' ': ECS takes letters, digits and - _ : . / # only"),
    ("ubuntu:café", "it has 'é': ECS takes letters, digits and - _ : . / # only"),
    ("ubuntu@sha256:" + "a" * 40, "its digest 'sha256:" + "a" * 40 + "' is not one ECS takes (sha256: and exactly 64 hex digits)"),
    ("ubuntu@sha512:" + "a" * 128, "its digest 'sha512:" + "a" * 128 + "' is not one ECS takes (sha256: and exactly 64 hex digits)"),
])
def test_what_ecs_refuses_as_a_containers_image_is_said(image, problem):
    """API_ContainerDefinition's image: at most 255 characters (before a digest), letters,
    digits and - _ : . / #, sha256 digests of 64 hex digits only; Docker's grammar takes more."""
    assert images.ecs_image_problem(image) == problem


@pytest.mark.parametrize("value, chosen", [
    ("*", ""), ("", ""), (None, ""), ("docker://ubuntu:22.04", "ubuntu:22.04"),
    (["https://gcr.io/x/y:1", "quay.io/a/b:2"], "quay.io/a/b:2"),
    (["oras://ghcr.io/x/y:1", "*"], ""),  # (any environment will do: the default image)
    (["oras://ghcr.io/x/y:1"], "oras://ghcr.io/x/y:1"),  # (refused by name by the image checks)
])
def test_the_image_chosen_of_a_containers_alternatives(value, chosen):
    from miniwdl_fargate import images

    assert images.chosen_image(value) == chosen
