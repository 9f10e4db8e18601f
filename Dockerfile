# One image for the HTTP service (the default command) and the fine-tune job:
#   docker build -t ktl:latest .
#   docker run -p 8000:8000 -v "$PWD/model_store:/models:ro" ktl:latest
#   docker run -v "$PWD/model_store:/models" -v "$PWD/photos:/data:ro" ktl:latest \
#       ktl train /data --name bees
# Build argument PRETRAINED="resnet50 vgg16" stores those backbones' ImageNet
# weights in Keras' own cache inside the image, so training works offline later.

# Stage 1: wheels of the project and of every dependency (tensorflow-cpu via the cpu extra).
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY models/ models/
COPY training/ training/
COPY service/ service/
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels ".[cpu]"

# Stage 2: the runtime, holding only what those wheels install.
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

# The wheels are bind-mounted from stage 1, so they never become a layer of this image.
# The bytecode pip compiles stays (~140 MB): without it every start of the service or
# of a job recompiles TensorFlow's modules, ~20 s more per import measured here.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv "$VIRTUAL_ENV" \
    && "$VIRTUAL_ENV/bin/pip" install --no-cache-dir --no-index --find-links=/wheels "ktl[cpu]"

USER 10001:10001
WORKDIR /home/ktl

# Space-separated backbone names of `ktl backbones`; empty (the default) downloads nothing.
ARG PRETRAINED=""
RUN --mount=type=bind,source=scripts/fetch_weights.py,target=/tmp/fetch_weights.py \
    python /tmp/fetch_weights.py "$PRETRAINED"

VOLUME /models
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('KTL_PORT', '8000') + '/healthz', timeout=4)"]
CMD ["ktl", "serve"]
