# The driver image: miniwdl + the miniwdl-fargate plugin. The driver task definition runs
# `miniwdl-fargate driver`; WDL task containers use their own images.
#   make push-image   builds it for linux/amd64 (the driver's RuntimePlatform), creates the ECR
#                     repository if needed and pushes; sam deploy's DriverImage default points at it.
FROM public.ecr.aws/docker/library/python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY plugin /src/plugin
RUN pip install /src/plugin && rm -rf /src/plugin \
 && useradd --create-home --uid 1000 --user-group driver
# Not root: the EFS access point maps every file operation to its own POSIX user, whatever the
# container's, so the driver needs no privileges of its own.
USER driver
WORKDIR /mnt/efs
# A run-to-completion task, not a service: ECS decides from its exit code, nothing to probe.
HEALTHCHECK NONE
CMD ["miniwdl-fargate", "driver"]
