# The driver image: miniwdl + the miniwdl-fargate plugin. The driver task definition runs
# `miniwdl-fargate driver`; task containers use their own images.
#   docker build -t miniwdl-fargate-driver . && docker tag/push it to ECR, then pass its URI as
#   the DriverImage parameter of `sam deploy`.
FROM public.ecr.aws/docker/library/python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY plugin /src/plugin
RUN pip install /src/plugin && rm -rf /src/plugin
WORKDIR /mnt/efs
CMD ["miniwdl-fargate", "driver"]
