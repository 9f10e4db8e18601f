"""Put ImageNet weights of chosen backbones into Keras' own cache (``$KERAS_HOME/models/``).

Used by the Dockerfile's ``PRETRAINED`` build argument, so ``ktl train`` inside
the image works offline later:  python scripts/fetch_weights.py "resnet50 vgg16"
An empty argument fetches nothing. Each backbone is built once with
``weights="imagenet"``, the path ``ktl train`` takes, so Keras checks the file's hash.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    names = " ".join(argv).split()
    if not names:
        print("PRETRAINED is empty: no ImageNet weights fetched", file=sys.stderr)
        return 0
    from models.networks.backbones import UnknownBackbone, get_backbone
    from models.networks.classifier import WeightsUnavailable, build_backbone, keras_cache_path

    for name in names:
        try:
            spec = get_backbone(name)
        except UnknownBackbone as exc:
            print(f"fetch_weights: {exc}", file=sys.stderr)
            return 2
        if not spec.pretrained:
            print(f"fetch_weights: {name} has no ImageNet weights to fetch", file=sys.stderr)
            return 2
        try:
            build_backbone(spec, (spec.default_size, spec.default_size), "imagenet")
        except WeightsUnavailable as exc:
            print(f"fetch_weights: {exc}", file=sys.stderr)
            return 1
        print(f"fetched {name}: {keras_cache_path(spec)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
