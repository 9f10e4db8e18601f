"""``ktl explain``: where a published model looks (Grad-CAM), or what excites a
layer most (a deconvnet projection)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import add_model, add_store, load_model
from models.choices import EXPLAIN_METHODS


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "explain",
        help="show where a published model looks (Grad-CAM, deconvnet)",
        description="Write an image explaining a published model's prediction: Grad-CAM "
        "heatmap over the image, or a deconvnet projection of the strongest activation.",
    )
    parser.add_argument("image", metavar="IMAGE")
    add_model(parser)
    parser.add_argument(
        "--out",
        metavar="OUT.png",
        help="where to write the PNG (default: IMAGE's name with .gradcam.png or "
        ".deconvnet.png, in the current folder)",
    )
    parser.add_argument(
        "--class", dest="class_", metavar="C", help="label or index (default: predicted)"
    )
    parser.add_argument("--method", choices=EXPLAIN_METHODS, default="gradcam")
    parser.add_argument("--layer", help="layer to explain (default: the last convolution's)")
    add_store(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from models.insight import deconvnet, explain
    from models.preprocessing import load_for_display, load_image

    bundle = load_model(args)
    pixels = load_image(Path(args.image), bundle.image_size)
    out = args.out or f"{Path(args.image).stem}.{args.method}.png"
    wanted = explain.resolve_class(bundle.labels, args.class_)
    if args.method == "deconvnet":
        projection = deconvnet.deconvnet(bundle.model, pixels, args.layer)
        Path(out).write_bytes(deconvnet.projection_png(pixels, projection))
        print(
            f"{args.image}: strongest activation of {projection.layer} is filter "
            f"{projection.filter} at {projection.position} ({projection.activation:.3g}); "
            f"its projection is in {out}"
        )
        return 0
    probabilities = explain.class_scores(bundle.model, pixels)
    index = int(np.argmax(probabilities)) if wanted is None else wanted
    heatmap = explain.gradcam(bundle.model, pixels, index, args.layer)
    # Over the image as it is (its aspect ratio and resolution), not the model's input.
    Path(out).write_bytes(explain.overlay_png(load_for_display(Path(args.image)), heatmap))
    print(
        f"{args.image}: Grad-CAM of {bundle.labels[index]!r} (probability "
        f"{probabilities[index]:.3f}) over {args.layer or explain.gradcam_layer(bundle.model)}; "
        f"written to {out}"
    )
    return 0
