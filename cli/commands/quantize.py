"""``ktl quantize NAME[:VERSION] --calibration DATA``: an INT8 engine for a published
version, checked for agreement, published as a new version (versions are immutable)."""

from __future__ import annotations

import argparse

from cli.common import MODEL_HELP, add_json, add_store, note, print_json


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "quantize",
        help="add an INT8 engine to a published version (as a new version)",
        description="Quantize a published version to INT8 (ONNX Runtime static quantization) "
        "with activation ranges measured on the train split of DATA, and record its "
        "agreement with the float model on DATA's validation and test splits (drawn with "
        "the version's own settings, so pass the data it was trained on). Published "
        "versions never change: the result is a new version whose lineage names the "
        "original. The service serves the INT8 engine where its top-1 agreement reaches "
        "KTL_INT8_MIN_AGREEMENT (default 0.99).",
    )
    parser.add_argument("model", metavar="NAME[:VERSION]", help=MODEL_HELP)
    parser.add_argument(
        "--calibration",
        required=True,
        metavar="DATA",
        help="labelled images in a layout ktl train reads (class folders, train/ val/ "
        "test/, or a CSV): calibration on its train split, agreement on the others",
    )
    add_store(parser)
    add_json(parser, "print the new version and the agreement as JSON")
    return parser


def run(args: argparse.Namespace) -> int:
    from cli.common import load_reference
    from models.store import open_store
    from training.publishing.publish import publish_quantized

    store = open_store(args.store, args.settings.cache_dir)
    bundle = load_reference(args.model, store)
    name = bundle.name
    new_version, new_path, engine = publish_quantized(bundle, args.calibration, store, note)
    if args.json:
        print_json(
            {
                "name": name,
                "version": new_version,
                "path": str(new_path),
                "from_version": bundle.version,
                "int8": engine.model_dump(mode="json"),
            }
        )
        return 0
    print(
        f"Published {name} version {new_version} at {new_path}: version {bundle.version} "
        f"with an INT8 engine ({engine.calibration_images} calibration images, "
        f"{engine.seconds:.0f} s)"
    )
    for split, figures in engine.agreement.items():
        print(
            f"  {split}: top-1 agreement {figures.top1_agreement:.1%} of {figures.images} "
            f"images, same decision {figures.decision_agreement:.1%}, max probability "
            f"difference {figures.max_abs_diff:.4f}"
        )
    _say_what_serves(new_path)
    return 0


def _say_what_serves(path) -> None:
    from models.bundle import read_metadata
    from models.engines.int8 import DEFAULT_GATE, int8_agreement

    lowest = int8_agreement(read_metadata(path)) or 0.0
    verdict = "serves it" if lowest >= DEFAULT_GATE else "keeps the Keras model"
    print(
        f"Lowest agreement {lowest:.1%}: with KTL_ENGINE=auto and the default gate "
        f"({DEFAULT_GATE:.0%}) the service {verdict} for this version."
    )
