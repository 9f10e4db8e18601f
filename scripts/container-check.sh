#!/usr/bin/env bash
# Build the project's Dockerfile for real and check the image: the service answers
# /healthz, /readyz and a prediction from a mounted read-only store, the HEALTHCHECK
# passes, and `ktl train` inside the container publishes a version offline.
#
#   make container-check            (or: bash scripts/container-check.sh)
#
# Works without a Docker engine: rootful podman with private configuration files
# (CONTAINERS_CONF / CONTAINERS_STORAGE_CONF under a temporary folder; nothing of
# the machine's own container configuration is touched). When the base image
# docker.io/library/python:3.11-slim is not in that storage it cannot be pulled
# here, so a stand-in is built once with debootstrap (Debian bookworm, Python 3.11)
# and CACHED in the storage under $KTL_CHECK_CACHE (default
# /var/tmp/ktl-container-check) for later runs; delete that folder to rebuild it.
# Everything else the check creates (containers, the image, its build layers,
# temporary files) is removed on exit.
#
# Environment:
#   KTL_CHECK_CACHE       persistent podman storage holding the base image
#   KTL_CHECK_PRETRAINED  passed as the PRETRAINED build argument (default empty:
#                         this machine cannot download ImageNet weights); when set,
#                         the check also verifies the weights are in the image
#   KTL_CHECK_STRICT=1    a step that cannot run here is a failure, not a skip
#   VENV                  the host virtual environment with ktl (default .venv)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=${VENV:-.venv}
BASE_IMAGE=docker.io/library/python:3.11-slim
IMAGE=localhost/ktl-check:$$             # the service (the default target)
TRAIN_IMAGE=localhost/ktl-check-train:$$  # the fine-tune job (target train)
CACHE=${KTL_CHECK_CACHE:-/var/tmp/ktl-container-check}
PRETRAINED=${KTL_CHECK_PRETRAINED:-}
STRICT=${KTL_CHECK_STRICT:-0}
MODEL=check
SKIPPED=()
CONTAINERS=()
IMAGES_BEFORE=""
BUILD_STARTED=0
WORK=""
START=$SECONDS

log() { printf '\n==> [%3ds] %s\n' "$((SECONDS - START))" "$*"; }
ok() { printf '    ok: %s\n' "$*"; }
fail() {
    printf '\nFAIL: %s\n' "$*" >&2
    exit 1
}
skip() {
    printf '    SKIP: %s\n' "$*"
    SKIPPED+=("$*")
    if [[ $STRICT == 1 ]]; then fail "KTL_CHECK_STRICT=1 and a step cannot run here: $*"; fi
}
cannot_run() {
    printf '\nSKIP: the container check cannot run on this machine: %s\n' "$*"
    if [[ $STRICT == 1 ]]; then exit 1; fi
    exit 0
}

cleanup() {
    local rc=$?
    set +e
    if [[ -n $WORK ]]; then
        log "cleaning up"
        for id in "${CONTAINERS[@]}"; do
            if podman container exists "$id" 2>/dev/null; then
                podman rm --force --time 5 "$id" >/dev/null 2>&1 && echo "    removed container $id"
            fi
        done
        # Every image this run created (the image and its build stages), and only those:
        # the cached base image was there before the build.
        local created=""
        if ((BUILD_STARTED)); then
            created=$(comm -13 <(printf '%s\n' "$IMAGES_BEFORE" | sort -u) \
                <(podman images --all --quiet --no-trunc 2>/dev/null | sort -u))
        fi
        if [[ -n $created ]]; then
            # shellcheck disable=SC2086
            podman rmi --force $created >/dev/null 2>&1
            echo "    removed $(wc -w <<<"$created") image(s) built by this run"
        fi
        # A store written by a container belongs to the container's user: remove as root.
        rm -rf "$WORK"
    fi
    if ((rc == 0)); then
        log "container check passed${SKIPPED[*]:+ (${#SKIPPED[@]} step(s) skipped, see above)}"
    else
        printf '\ncontainer check FAILED (exit %d)\n' "$rc" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- prerequisites
log "prerequisites"
[[ $(id -u) == 0 ]] || cannot_run "rootful podman, apt-get and debootstrap need root (run as root)"
[[ -x $VENV/bin/ktl ]] || fail "$VENV/bin/ktl not found: run \`make install\` first"
missing=()
for tool in podman buildah runc debootstrap; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    command -v apt-get >/dev/null || cannot_run "${missing[*]} missing and no apt-get to install them"
    echo "    installing ${missing[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah runc debootstrap >/dev/null
fi
ok "$(podman --version), $(runc --version | head -n1)"

WORK=$(mktemp -d /tmp/ktl-container-check.XXXXXX)
mkdir -p "$CACHE"
# crun fails here ("cgroups in hybrid mode not supported"): runc. The sandbox refuses
# the rlimits podman asks for a non-root USER by default: set them explicitly.
cat >"$WORK/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
cat >"$WORK/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$CACHE/storage"
runroot = "$CACHE/run"
EOF
export CONTAINERS_CONF=$WORK/containers.conf
export CONTAINERS_STORAGE_CONF=$WORK/storage.conf
podman info >/dev/null || fail "podman does not start with the private configuration ($WORK)"
ok "private podman configuration in $WORK, storage in $CACHE"

# ---------------------------------------------------------------- base image
log "base image $BASE_IMAGE"
if podman image exists "$BASE_IMAGE"; then
    ok "present (cached in $CACHE)"
else
    # No registry is reachable here: a Debian bookworm stand-in with Python 3.11 in
    # /usr/bin (the official image has it in /usr/local: the Dockerfile relies on neither).
    apt_sources=()
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list /etc/apt/sources.list; do
        [[ -r $f ]] && apt_sources+=("$f")
    done
    mirror=$(awk '
        /^URIs:/ { uris = $2 }
        /^Suites:/ && / bookworm( |$)/ && uris != "" { print uris; exit }
        /^deb / && !/security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }
    ' "${apt_sources[@]}" /dev/null)
    mirror=${mirror:-http://deb.debian.org/debian}
    echo "    not present and not pullable here: building a stand-in with debootstrap from $mirror"
    rootfs=$WORK/rootfs
    debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
        bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -n 20 "$WORK/debootstrap.log"; fail "debootstrap failed"; }
    # HTTPS from a build passes this machine's intercepting proxy: trust its CA, in
    # the stand-in only (the Dockerfile stays clean).
    cas=(/usr/local/share/ca-certificates/*.crt)
    if [[ -e ${cas[0]} ]]; then
        cp "${cas[@]}" "$rootfs/usr/local/share/ca-certificates/"
        chroot "$rootfs" update-ca-certificates >/dev/null 2>&1 || fail "update-ca-certificates failed in the stand-in"
    fi
    rm -f "$rootfs"/usr/lib/python3.*/EXTERNALLY-MANAGED
    ln -sf python3 "$rootfs/usr/bin/python"
    ln -sf pip3 "$rootfs/usr/bin/pip"
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
    bundle=/etc/ssl/certs/ca-certificates.crt
    tar -C "$rootfs" -c . | podman import \
        --change 'ENV LANG=C.UTF-8' \
        --change "ENV PIP_CERT=$bundle" \
        --change "ENV SSL_CERT_FILE=$bundle" \
        --change "ENV REQUESTS_CA_BUNDLE=$bundle" \
        --change 'CMD ["python3"]' \
        - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    ok "stand-in built and cached in $CACHE: $(podman run --rm "$BASE_IMAGE" python --version)"
fi

# ---------------------------------------------------------------- build
IMAGES_BEFORE=$(podman images --all --quiet --no-trunc)
BUILD_STARTED=1
log "podman build (PRETRAINED=\"$PRETRAINED\")"
if [[ -z $PRETRAINED ]]; then
    skip "ImageNet weights are not pre-downloaded (PRETRAINED empty): this machine cannot reach storage.googleapis.com; set KTL_CHECK_PRETRAINED=\"resnet50\" where it can"
fi
podman build --pull=never --format docker -t "$IMAGE" . >"$WORK/build.log" 2>&1 ||
    { tail -n 40 "$WORK/build.log"; fail "podman build failed (log above)"; }
ok "built $IMAGE"
podman build --pull=never --format docker --target train --build-arg "PRETRAINED=$PRETRAINED" \
    -t "$TRAIN_IMAGE" . >"$WORK/build-train.log" 2>&1 ||
    { tail -n 40 "$WORK/build-train.log"; fail "podman build --target train failed (log above)"; }
ok "built $TRAIN_IMAGE"
podman run --rm --no-healthcheck "$IMAGE" python -c 'import matplotlib' 2>/dev/null &&
    fail "the service image carries matplotlib, which only training needs"
podman run --rm --no-healthcheck "$TRAIN_IMAGE" python -c 'import flask' 2>/dev/null &&
    fail "the training image carries flask, which only the service needs"
ok "each image holds only its own extras (serve: no matplotlib; train: no flask)"

user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
uid=${user%%:*}
[[ -n $uid && $uid != 0 && $uid != root ]] || fail "the image runs as root (USER '$user')"
[[ $(podman run --rm --no-healthcheck "$IMAGE" id -u) == "$uid" ]] || fail "the container does not run as USER $user"
ok "runs as non-root user $user"
podman run --rm --no-healthcheck "$TRAIN_IMAGE" python -c '
import os
from keras.src.backend.config import keras_home
home = keras_home()
assert home == os.environ["KERAS_HOME"], home
assert os.access(home, os.W_OK), f"{home} is not writable: Keras would ignore it"
' 2>/dev/null || fail "KERAS_HOME in the image is not the cache Keras uses for the runtime user"
ok "KERAS_HOME is the Keras cache the runtime user gets"
if [[ -n $PRETRAINED ]]; then
    # shellcheck disable=SC2086
    podman run --rm --no-healthcheck --network none "$TRAIN_IMAGE" python -c '
import sys
from models.networks.backbones import get_backbone
from models.networks.classifier import keras_cache_path
missing = [n for n in sys.argv[1:] if not keras_cache_path(get_backbone(n)).is_file()]
sys.exit(f"weights missing in the image: {missing}" if missing else 0)
' $PRETRAINED || fail "pre-downloaded weights not found in the image"
    ok "ImageNet weights of $PRETRAINED are in the image"
fi

# ---------------------------------------------------------------- a store with a model
log "a store with a trained model (host venv, smallcnn at 16 px, 1 epoch)"
"$VENV/bin/python" -c 'import sys; from training.dataset.demo import make_shapes_dataset
make_shapes_dataset(sys.argv[1], per_class=12, size=16)' "$WORK/data"
"$VENV/bin/ktl" train "$WORK/data" --name "$MODEL" --store "$WORK/store" --backbone smallcnn \
    --weights none --image-size 16 --epochs 1 --fine-tune-epochs 0 --json \
    >"$WORK/train-host.json" 2>"$WORK/train-host.log" ||
    { tail -n 20 "$WORK/train-host.log"; fail "ktl train on the host failed"; }
ok "published $MODEL version 1 in $WORK/store"

# ---------------------------------------------------------------- the service
log "the service: store mounted read-only at /models, read-only root as in deploy/"
port=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Podman logs that it cannot add health check timers (no systemd here): that log goes
# to podman.log; the health check itself runs below with `podman healthcheck run`.
# Read-only root, /tmp writable, no capabilities: the securityContext of deploy/deployment.yaml.
CONTAINERS+=("ktl-check-$$-service")
cid=$(podman run -d --name "ktl-check-$$-service" -p "127.0.0.1:$port:8000" -v "$WORK/store:/models:ro" \
    --read-only --read-only-tmpfs=false --tmpfs /tmp --cap-drop ALL \
    --security-opt no-new-privileges "$IMAGE" 2>>"$WORK/podman.log") ||
    { cat "$WORK/podman.log"; fail "podman run failed"; }
url=http://127.0.0.1:$port
ok "container ${cid:0:12} on $url"

wait_for() { # path, seconds: until it answers 200
    local deadline=$((SECONDS + $2))
    until curl -fsS -o /dev/null "$url$1" 2>/dev/null; do
        if [[ $(podman inspect --format '{{.State.Running}}' "$cid") != true ]]; then
            podman logs "$cid" 2>&1 | tail -n 30
            fail "the container stopped before $1 answered"
        fi
        ((SECONDS < deadline)) || { podman logs "$cid" 2>&1 | tail -n 30; fail "$1 did not answer 200 within $2 s"; }
        sleep 1
    done
}
wait_for /healthz 120
ok "/healthz: $(curl -fsS "$url/healthz")"
wait_for /readyz 120
ok "/readyz: 200"
podman healthcheck run "$cid" >/dev/null || fail "podman healthcheck run: unhealthy"
ok "podman healthcheck run: healthy (the image's HEALTHCHECK)"

image=$(find "$WORK/data/circle" -name '*.png' | sort | head -n1)
curl -fsS -F "image=@$image" "$url/v1/models/$MODEL/predict" >"$WORK/predict.json" ||
    fail "predict did not answer 200"
"$VENV/bin/python" - "$WORK/predict.json" "$MODEL" <<'EOF' || fail "unexpected predict answer: $(cat "$WORK/predict.json")"
import json, math, sys
body = json.load(open(sys.argv[1]))
assert body["model"] == sys.argv[2] and body["version"] == 1, body
(prediction,) = body["predictions"]
probabilities = prediction["probabilities"]
assert set(probabilities) == {"circle", "square", "triangle"}, probabilities
assert math.isclose(sum(probabilities.values()), 1.0, abs_tol=1e-4), probabilities
top = prediction["top"][0]
print(f"    ok: predict: {top['label']} {top['probability']:.3f}, probabilities sum to 1")
EOF
code=$(curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: image/png' \
    --data-binary 'not an image' "$url/v1/models/$MODEL/predict")
[[ $code == 400 ]] || fail "a body that is not an image answered $code, not 400"
ok "a body that is not an image: 400"
podman stop --time 30 "$cid" >/dev/null 2>>"$WORK/podman.log"
[[ $(podman inspect --format '{{.State.ExitCode}}' "$cid") == 0 ]] ||
    fail "gunicorn did not stop cleanly on SIGTERM"
ok "stops cleanly on SIGTERM"

# ---------------------------------------------------------------- the fine-tune job
log "the fine-tune job inside the container (no network, writable store)"
mkdir -p "$WORK/store-rw"
chown "$user" "$WORK/store-rw"
CONTAINERS+=("ktl-check-$$-train")
podman run --rm --name "ktl-check-$$-train" --no-healthcheck --network none --cap-drop ALL --security-opt no-new-privileges \
    -v "$WORK/store-rw:/models" -v "$WORK/data:/data:ro" "$TRAIN_IMAGE" ktl train /data --name trained --backbone smallcnn --weights none --image-size 16 \
    --epochs 1 --fine-tune-epochs 0 --json >"$WORK/train.json" 2>"$WORK/train.log" ||
    { tail -n 20 "$WORK/train.log"; fail "ktl train in the container failed"; }
"$VENV/bin/python" - "$WORK/train.json" <<'EOF' || fail "unexpected train output: $(cat "$WORK/train.json")"
import json, sys
body = json.load(open(sys.argv[1]))
assert body["name"] == "trained" and body["version"] == 1, body
print(f"    ok: published {body['name']} version {body['version']} at {body['path']}")
EOF
for f in model.keras metadata.json; do
    [[ -s $WORK/store-rw/trained/1/$f ]] || fail "trained/1/$f is not in the mounted store"
done
ok "the mounted store holds trained/1/model.keras and metadata.json"

# ---------------------------------------------------------------- size
log "image size"
# One image a call: podman 4.3 (Debian 12) takes at most one. sed, not head: under
# pipefail, head closing the pipe early could fail the check with SIGPIPE.
for image in "$IMAGE" "$TRAIN_IMAGE"; do
    podman images --format '{{.Repository}}:{{.Tag}}  {{.Size}}' "$image"
done
podman history --format '{{.Size}}\t{{.CreatedBy}}' "$IMAGE" | cut -c1-110 | sed -n '1,12p'
