"""The ``ktl`` command line. Heavy imports (TensorFlow) happen inside the
commands so ``ktl --help`` answers at once."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import sys
from pathlib import Path

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _store_default() -> str:
    return os.environ.get("KTL_MODEL_STORE", "model_store")


def _add_common(parser: argparse.ArgumentParser, *, json_help: str) -> None:
    parser.add_argument(
        "--store",
        default=_store_default(),
        help="model store folder (default: $KTL_MODEL_STORE or ./model_store)",
    )
    parser.add_argument("--json", action="store_true", help=json_help)


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ktl train`` and ``python -m training``; None means 'not given'."""
    parser.add_argument(
        "data", nargs="?", help="class folders, a folder with train/ and val/, or a CSV path,label"
    )
    parser.add_argument("--name", help="model name in the store: [a-z0-9][a-z0-9_-]{0,63}")
    parser.add_argument(
        "--config",
        metavar="JOB.toml",
        help="TOML file with the same keys as these flags; flags win",
    )
    group = parser.add_argument_group("model")
    group.add_argument("--backbone", help="backbone from `ktl backbones` (default resnet50)")
    group.add_argument(
        "--weights",
        help="imagenet (default: Keras' download and cache, $KERAS_HOME), none (random "
        "initialisation, the whole network trains), or the path of a weights file",
    )
    group.add_argument(
        "--image-size", type=int, help="square input size in pixels (default: the backbone's)"
    )
    group.add_argument(
        "--pooling", choices=("avg", "max"), help="global pooling before the head (default avg)"
    )
    group.add_argument("--dropout", type=float, help="dropout before the softmax (default 0.2)")
    group = parser.add_argument_group("recipe")
    group.add_argument(
        "--epochs",
        type=int,
        help="epochs of the head phase (or of training from scratch; default 10)",
    )
    group.add_argument(
        "--fine-tune-epochs",
        type=int,
        help="epochs with the top block unfrozen; 0 skips (default 5)",
    )
    group.add_argument(
        "--unfreeze-from",
        metavar="LAYER",
        help="first backbone layer trained in phase 2 (default: the backbone's)",
    )
    group.add_argument("--lr", type=float, help="learning rate of the head phase (default 1e-3)")
    group.add_argument(
        "--fine-tune-lr", type=float, help="learning rate of the fine-tuning phase (default 1e-5)"
    )
    group.add_argument("--batch-size", type=int, help="images per step (default 32)")
    group.add_argument(
        "--patience",
        type=int,
        help="epochs without val_loss improvement before stopping (default 3)",
    )
    group.add_argument(
        "--val-split", type=float, help="share of each class held out for validation (default 0.2)"
    )
    group.add_argument(
        "--seed", type=int, help="seed of the split, augmentation and initialisation (default 42)"
    )
    group.add_argument(
        "--no-augment",
        dest="augment",
        action="store_const",
        const=False,
        help="no flip/rotation/zoom/contrast augmentation",
    )
    group.add_argument(
        "--mixed-precision",
        action="store_const",
        const=True,
        help="float16 compute with float32 weights (GPUs with tensor cores; slower on CPUs)",
    )
    group.add_argument(
        "--jit", action="store_const", const=True, help="compile the training step with XLA"
    )
    group.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where the decoded images are cached as a memory map, e.g. a disk with room "
        "(default: the job's folder in the store)",
    )
    group.add_argument(
        "--resume",
        action="store_const",
        const=True,
        help="continue this name's interrupted job from its last checkpoint",
    )
    group.add_argument(
        "--strategy",
        choices=("auto", "mirrored", "multiworker"),
        help="devices and machines: mirrored (every local GPU), multiworker (the workers "
        "in $TF_CONFIG; each decodes its shard of the files, worker 0 or the chief "
        "publishes), auto (default: multiworker when TF_CONFIG names several workers, "
        "mirrored with several GPUs, else one device)",
    )
    _add_common(
        parser, json_help="print one JSON object (name, version, path, metrics, dataset, seconds)"
    )
    parser.set_defaults(store=None)  # so a --config file can set it


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ktl",
        description="Fine-tune ImageNet backbones on your images, publish versioned models, "
        "serve them.",
        epilog="Exit codes: 0 success, 2 usage or input error, 1 anything else. "
        "Run `ktl COMMAND --help` for each command's options.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "backbones",
        help="list the backbones",
        description="List backbones: family, default size, parameters (without head), "
        "preprocessing, ImageNet weights.",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list")

    p = sub.add_parser(
        "train",
        help="fine-tune a backbone and publish a new version",
        description="Fine-tune a backbone on DATA and publish the next version of NAME.",
    )
    _add_train_options(p)

    p = sub.add_parser(
        "predict",
        help="classify local images with a published model",
        description="Classify images with a published model (same preprocessing and "
        "response as the HTTP service).",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--name", required=True, help="model name")
    p.add_argument("--version", type=int, help="version (default: the latest)")
    p.add_argument("--top-k", type=int, default=5, help="labels to show per image (default 5)")
    _add_common(p, json_help="print the HTTP native predict body")

    p = sub.add_parser(
        "serve",
        help="run the HTTP service under gunicorn",
        description="Run the HTTP classification service under gunicorn "
        "(KTL_* variables configure it).",
    )
    p.add_argument("--host", help="address to bind (default $KTL_HOST or 0.0.0.0)")
    p.add_argument("--port", type=int, help="port (default $KTL_PORT or 8000)")
    p.add_argument(
        "--workers", type=int, help="gunicorn worker processes (default $KTL_WORKERS or 1)"
    )
    p.add_argument(
        "--store", default=None, help="model store (default $KTL_MODEL_STORE or ./model_store)"
    )

    p = sub.add_parser(
        "inspect",
        help="per-layer kernel, stride, padding, output shape and parameters",
        description="Show a backbone's (without head) or a published model's layers: kernel F, "
        "stride S, padding P, filters, output shape, parameters, and each convolution's and "
        "pooling's output size by (W - F + 2P) / S + 1 next to what Keras reports.",
    )
    p.add_argument("backbone", nargs="?", metavar="BACKBONE", help="a name of `ktl backbones`")
    p.add_argument("--name", help="a published model instead of a backbone")
    p.add_argument("--version", type=int, help="version of --name (default: the latest)")
    p.add_argument("--image-size", type=int, help="input size for BACKBONE (default: its own)")
    p.add_argument("--filters", metavar="OUT.png", help="also write the first conv's filters")
    _add_common(p, json_help="print the report as JSON")

    p = sub.add_parser(
        "explain",
        help="show where a published model looks (Grad-CAM, deconvnet)",
        description="Write an image explaining a published model's prediction: Grad-CAM "
        "heatmap over the image, or a deconvnet projection of the strongest activation.",
    )
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--name", required=True, help="model name")
    p.add_argument("--version", type=int, help="version (default: the latest)")
    p.add_argument("--out", required=True, metavar="OUT.png", help="where to write the PNG")
    p.add_argument(
        "--class", dest="class_", metavar="C", help="label or index (default: predicted)"
    )
    p.add_argument("--method", choices=("gradcam", "deconvnet"), default="gradcam")
    p.add_argument("--layer", help="layer to explain (default: the last convolution's)")
    p.add_argument("--store", default=_store_default(), help="model store folder")

    p = sub.add_parser(
        "export",
        help="export a published model as a SavedModel, ONNX or TFLite",
        description="Write a published model for another runtime under OUT/<name>/<version>/: "
        "savedmodel (TensorFlow Serving base path OUT/<name>; serving_default takes encoded "
        "images), onnx or tflite (uint8 pixels at the model's size). The model store is "
        "never written to.",
    )
    p.add_argument("--name", required=True, help="model name")
    p.add_argument("--version", type=int, help="version (default: the latest)")
    p.add_argument(
        "--format", required=True, choices=("savedmodel", "onnx", "tflite"), dest="format"
    )
    p.add_argument("--out", default="exports", help="export folder (default ./exports)")
    _add_common(p, json_help="print the written path as JSON")

    p = sub.add_parser(
        "demo",
        help="make a built-in dataset, train on it and publish `demo`",
        description="Generate a small synthetic dataset (circles, squares, triangles), "
        "train on it and publish it as `demo`.",
    )
    p.add_argument(
        "--data-dir", default="demo_data", help="where to write the images (default ./demo_data)"
    )
    p.add_argument("--name", default="demo", help="model name (default demo)")
    _add_common(p, json_help="print the training summary as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    signal.signal(signal.SIGTERM, _raise_interrupt)
    commands = {
        "backbones": _backbones,
        "train": _train,
        "predict": _predict,
        "serve": _serve,
        "demo": _demo,
        "inspect": _inspect,
        "explain": _explain,
        "export": _export,
    }
    try:
        return commands[args.command](args)
    except KeyboardInterrupt as exc:
        print(
            f"ktl: {exc}"
            if str(exc)
            else "ktl: interrupted; nothing was published. Run the same command with --resume "
            "to continue a training job from its last finished epoch.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except Exception as exc:
        if _is_user_error(exc):
            print(f"ktl: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if _is_publish_error(exc):
            print(f"ktl: error: {exc}", file=sys.stderr)
            return 1
        raise


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _is_user_error(exc: Exception) -> bool:
    from models.backbones import UnknownBackbone
    from models.bundle import BundleError
    from models.classifier import WeightsError, WeightsUnavailable
    from models.explain import ExplainError
    from models.export import ExportError
    from models.preprocessing import ImageError
    from models.store import InvalidName, ModelNotFound
    from training.config import ConfigError
    from training.data import DataError
    from training.distributed import ClusterError

    user_errors = (
        ConfigError, DataError, WeightsError, WeightsUnavailable, UnknownBackbone,
        InvalidName, ModelNotFound, ImageError, BundleError, ExplainError, ExportError,
        ClusterError,
    )  # fmt: skip
    return isinstance(exc, user_errors)


def _is_publish_error(exc: Exception) -> bool:
    """Failures outside the user's input that have a clear message: exit 1."""
    from models.store import PublishError
    from training.distributed import WorkerLost

    return isinstance(exc, PublishError | WorkerLost)


def _print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _backbones(args) -> int:
    from models.backbones import list_backbones

    rows = [
        {
            "name": s.name,
            "family": s.family,
            "default_size": s.default_size,
            "params": s.params,
            "preprocessing": s.preprocessing,
            "imagenet_weights": s.pretrained,
            "unfreeze_from": s.unfreeze_from,
        }
        for s in list_backbones()
    ]
    if args.json:
        _print_json(rows)
        return 0
    print(f"{'name':<15}{'family':<13}{'size':>5}{'parameters':>13}  {'preprocessing':<14}imagenet")
    for r in rows:
        print(
            f"{r['name']:<15}{r['family']:<13}{r['default_size']:>5}{r['params']:>13,}  "
            f"{r['preprocessing']:<14}"
            f"{'yes' if r['imagenet_weights'] else 'no (train with --weights none)'}"
        )
    return 0


def train_config(args):
    """The job configuration from ``--config`` and flags (flags win)."""
    from training.config import build_config, read_toml

    file_settings = read_toml(args.config) if args.config else {}
    flags = {
        key: value for key, value in vars(args).items() if key not in ("command", "config", "json")
    }
    if flags.get("store") is None and "store" not in file_settings:
        flags["store"] = _store_default()
    return build_config(file_settings, flags)


def _train(args) -> int:
    from training.job import run_job

    result = run_job(train_config(args))
    _print_json(result) if args.json else print_summary(result)
    return 0


def print_summary(result: dict) -> None:
    metrics, dataset, training = result["metrics"], result["dataset"], result["training"]
    phases = ", ".join(f"{p['name']} {p['epochs']} epochs" for p in training["phases"])
    worker = result.get("worker")
    if worker and worker["index"]:
        print(
            f"Trained as worker {worker['index']} of {worker['workers']}; the chief published "
            f"{result['name']} version {result['version']}: {result['path']}"
        )
    else:
        print(f"Published {result['name']} version {result['version']}: {result['path']}")
    print(
        f"  data        {dataset['train_images']} train / {dataset['val_images']} "
        "validation images, "
        f"{len(dataset['classes'])} classes; {dataset['skipped']} skipped, "
        f"{dataset['ignored_files']} non-image files ignored"
    )
    for warning in dataset["warnings"]:
        print(f"  note        {warning}")
    print(f"  training    {training['recipe']}: {phases}")
    print(
        f"  validation  accuracy {metrics['accuracy']:.3f}, top-{metrics['top_k']} "
        f"{metrics['top_k_accuracy']:.3f}, loss {metrics['loss']:.3f}, "
        f"macro F1 {metrics['macro_f1']:.3f}"
    )
    width = max(len(label) for label in metrics["per_class"]) + 2
    print(f"  {'class':<{width}}precision  recall     f1  support")
    for label, c in metrics["per_class"].items():
        print(
            f"  {label:<{width}}{c['precision']:>9.3f}{c['recall']:>8.3f}{c['f1']:>7.3f}"
            f"{c['support']:>9}"
        )
    print(f"  took        {result['seconds']:.1f} s")


def _predict(args) -> int:
    import numpy as np

    from models.bundle import load_bundle
    from models.inference import Classifier, predict_response
    from models.preprocessing import ImageError, load_image
    from models.store import ModelStore, validate_name

    if args.top_k < 1:
        print("ktl: error: --top-k must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    _, path = ModelStore(args.store).resolve(validate_name(args.name), args.version)
    bundle = load_bundle(path)
    classifier = Classifier(bundle)
    pixels, names, failed = [], [], 0
    for image in args.images:
        try:
            pixels.append(load_image(Path(image), bundle.image_size))
            names.append(Path(image).name)
        except (ImageError, OSError) as exc:
            failed += 1
            print(f"ktl: skipped {image}: {exc}", file=sys.stderr)
    rows = classifier.predict(np.stack(pixels)) if pixels else np.zeros((0, len(bundle.labels)))
    response = predict_response(bundle, rows, names, min(args.top_k, len(bundle.labels)))
    if args.json:
        _print_json(response)
    else:
        for prediction in response["predictions"]:
            top = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in prediction["top"])
            print(f"{prediction['filename']}: {top}")
    if failed:
        print(f"ktl: {failed} of {len(args.images)} files could not be classified", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _load(args):
    from models.bundle import load_bundle
    from models.store import ModelStore, validate_name

    _, path = ModelStore(args.store).resolve(validate_name(args.name), args.version)
    return load_bundle(path)


def _inspect(args) -> int:
    from models.inspect import build_for_inspection, inspect_bundle, inspect_model, render_text

    if (args.backbone is None) == (args.name is None):
        print("ktl: error: give a BACKBONE or --name NAME (not both)", file=sys.stderr)
        return EXIT_USAGE
    if args.name is not None:
        bundle = _load(args)
        model, report = bundle.model, inspect_bundle(bundle)
    else:
        model = build_for_inspection(args.backbone, args.image_size)
        size = list(model.input_shape[1:3])
        report = {"backbone": args.backbone, "image_size": size, **inspect_model(model)}
    if args.filters:
        from models.explain import filter_grid_png, first_conv_kernel

        layer, kernel = first_conv_kernel(model)
        Path(args.filters).write_bytes(filter_grid_png(kernel))
        print(f"Wrote {min(kernel.shape[-1], 64)} filters of {layer} to {args.filters}",
              file=sys.stderr)  # fmt: skip
    _print_json(report) if args.json else print(render_text(report))
    return 0


def _explain(args) -> int:
    import numpy as np

    from models import explain
    from models.preprocessing import load_image

    bundle = _load(args)
    pixels = load_image(Path(args.image), bundle.image_size)
    wanted = explain.resolve_class(bundle.labels, args.class_)
    if args.method == "deconvnet":
        projection = explain.deconvnet(bundle.model, pixels, args.layer)
        Path(args.out).write_bytes(explain.projection_png(pixels, projection))
        print(
            f"{args.image}: strongest activation of {projection.layer} is filter "
            f"{projection.filter} at {projection.position} ({projection.activation:.3g}); "
            f"its projection is in {args.out}"
        )
        return 0
    probabilities = explain.class_scores(bundle.model, pixels)
    index = int(np.argmax(probabilities)) if wanted is None else wanted
    heatmap = explain.gradcam(bundle.model, pixels, index, args.layer)
    Path(args.out).write_bytes(explain.overlay_png(pixels, heatmap))
    print(
        f"{args.image}: Grad-CAM of {bundle.labels[index]!r} (probability "
        f"{probabilities[index]:.3f}) over {args.layer or explain.gradcam_layer(bundle.model)}; "
        f"written to {args.out}"
    )
    return 0


def _export(args) -> int:
    from models.export import check_outside_store, export_bundle

    check_outside_store(args.out, args.store)
    bundle = _load(args)
    path = export_bundle(bundle, args.format, args.out)
    if args.json:
        _print_json(
            {"name": bundle.name, "version": bundle.version, "format": args.format,
             "path": str(path)}
        )  # fmt: skip
    else:
        print(f"Exported {bundle.name} version {bundle.version} as {args.format}: {path}")
    return 0


def gunicorn_config_path() -> Path:
    """``service/gunicorn.conf.py``, found without importing the service."""
    spec = importlib.util.find_spec("service")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the service package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "gunicorn.conf.py"


def _serve(args) -> int:
    env = {
        "KTL_HOST": args.host,
        "KTL_PORT": args.port,
        "KTL_WORKERS": args.workers,
        "KTL_MODEL_STORE": args.store,
    }
    for key, value in env.items():
        if value is not None:
            os.environ[key] = str(value)
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        str(gunicorn_config_path()),
        "service.app:create_app()",
    ]
    os.execv(sys.executable, command)
    return 1  # not reached: execv replaces this process


def _demo(args) -> int:
    from models.backbones import get_backbone
    from models.classifier import WeightsUnavailable, build_backbone
    from training.config import build_config
    from training.demo import make_shapes_dataset
    from training.job import run_job

    print(
        f"Writing the demo dataset (circles, squares, triangles) to {args.data_dir}",
        file=sys.stderr,
    )
    make_shapes_dataset(args.data_dir, per_class=DEMO_IMAGES_PER_CLASS)
    pretrained = get_backbone(DEMO_PRETRAINED["backbone"])
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Keras reports downloads on stdout
            build_backbone(pretrained, (DEMO_PRETRAINED["image_size"],) * 2, "imagenet")
        settings = DEMO_PRETRAINED
        print(f"Fine-tuning {pretrained.name} with ImageNet weights", file=sys.stderr)
    except WeightsUnavailable as exc:
        settings = DEMO_SCRATCH
        reason = str(exc).splitlines()[0]
        print(
            f"{reason}\nSo the demo trains {settings['backbone']} from scratch instead "
            "(no transfer learning; fine on this simple dataset).",
            file=sys.stderr,
        )
    config = build_config(
        {}, {"data": args.data_dir, "name": args.name, "store": args.store, **settings}
    )
    result = run_job(config)
    _print_json(result) if args.json else print_summary(result)
    return 0


# With ImageNet weights: a small pretrained backbone fine-tunes in a few epochs.
DEMO_PRETRAINED = {
    "backbone": "efficientnetb0",
    "weights": "imagenet",
    "image_size": 64,
    "epochs": 5,
    "fine_tune_epochs": 2,
}
# Without them: smallcnn learns the shapes from scratch (about 2 minutes on 2 cores).
DEMO_SCRATCH = {
    "backbone": "smallcnn",
    "weights": "none",
    "image_size": 32,
    "epochs": 30,
    "patience": 8,
    "augment": False,
}
DEMO_IMAGES_PER_CLASS = 400
