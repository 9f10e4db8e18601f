"""``ktl train`` (also ``python -m training``): fine-tune and publish a version."""

from __future__ import annotations

import argparse

from cli.common import add_json, add_store, print_json, store_default
from cli.train_summary import print_summary
from models.choices import POOLING
from training.config import SCHEDULES, STRATEGIES


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "train",
        help="fine-tune a backbone and publish a new version",
        description="Fine-tune a backbone on DATA and publish the next version of NAME.",
    )
    add_train_options(parser)
    return parser


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ktl train`` and ``python -m training``; None means 'not given', so a
    ``--config`` file can set what a flag leaves alone."""
    parser.add_argument(
        "data", nargs="?", help="class folders, a folder with train/ and val/, or a CSV path,label"
    )
    parser.add_argument("--name", help="model name in the store: [a-z0-9][a-z0-9_-]{0,63}")
    parser.add_argument(
        "--config",
        metavar="JOB.toml",
        help="TOML file with the same keys as these flags; flags win",
    )
    _add_model_options(parser.add_argument_group("model"))
    recipe = parser.add_argument_group("recipe")
    _add_recipe_options(recipe)
    _add_regularisation_options(recipe)
    _add_trust_options(parser.add_argument_group("figures you can trust"))
    _add_run_options(recipe)
    _add_release_options(parser.add_argument_group("what goes live"))
    _add_doctor_options(parser.add_argument_group("corrections from ktl doctor"))
    add_store(parser, default=None)
    add_json(parser, "print one JSON object (name, version, path, metrics, dataset, seconds)")


def _add_model_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--backbone", help="backbone from `ktl backbones` (default resnet50)")
    group.add_argument(
        "--weights",
        help="imagenet (Keras' download and cache, $KERAS_HOME; the default where the "
        "backbone has it), none (random initialisation, the whole network trains; the "
        "default otherwise), the path of a weights file, or model:NAME[:VERSION|:LABEL] to "
        "start from a published version of the store (model:flowers:stable)",
    )
    group.add_argument(
        "--image-size", type=int, help="square input size in pixels (default: the backbone's)"
    )
    group.add_argument(
        "--pooling", choices=POOLING, help="global pooling before the head (default avg)"
    )
    group.add_argument("--dropout", type=float, help="dropout before the softmax (default 0.2)")


def _add_rate_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--epochs",
        type=int,
        help="epochs of the head phase, or of training from scratch (default 10 with pretrained "
        "weights, 40 from scratch)",
    )
    group.add_argument(
        "--min-steps",
        type=int,
        metavar="N",
        help="the head phase runs at least N optimizer steps: with few images its epochs "
        "rise to N / steps per epoch, early stopping still ends it (default 150; 0: "
        "--epochs alone)",
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
    group.add_argument(
        "--lr",
        metavar="RATE|auto",
        help="learning rate of the head phase (default 1e-3); auto: a range test chooses it",
    )
    group.add_argument(
        "--fine-tune-lr",
        metavar="RATE|auto",
        help="learning rate of the fine-tuning phase (default 1e-5); auto: a range test",
    )
    group.add_argument(
        "--schedule",
        choices=SCHEDULES,
        help="the rate over each phase: constant (default), cosine (warm-up, then cosine "
        "down) or onecycle (fastai's one-cycle)",
    )
    group.add_argument(
        "--layer-decay",
        type=float,
        metavar="F",
        help="fine-tuning: each layer below the top learns at F times the rate of the one "
        "above (default 1: all alike)",
    )


def _add_recipe_options(group: argparse._ArgumentGroup) -> None:
    _add_rate_options(group)
    group.add_argument("--batch-size", type=int, help="images per step (default 32)")
    group.add_argument(
        "--patience",
        type=int,
        help="epochs without a better validation loss before stopping (default 3 with "
        "pretrained weights, 10 from scratch)",
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


def _add_regularisation_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--label-smoothing", type=float, metavar="E", help="smooth training targets by E (0.1)"
    )
    group.add_argument(
        "--mixup", type=float, metavar="ALPHA", help="MixUp training batches (alpha, e.g. 0.2)"
    )
    group.add_argument(
        "--cutmix", type=float, metavar="ALPHA", help="CutMix training batches (alpha, e.g. 1.0)"
    )
    group.add_argument(
        "--randaugment",
        action="store_const",
        const=True,
        help="Keras' RandAugment: two random image operations per training image",
    )


def _add_trust_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--test-split",
        type=float,
        help="share of each class held out as a test split that nothing in training sees "
        "(default: 0.15 when every class has 40 images, else none); 0 turns it off",
    )
    group.add_argument(
        "--no-calibrate",
        dest="calibrate",
        action="store_const",
        const=False,
        help="keep the raw softmax probabilities (default: temperature scaling fitted on "
        "validation, inside the saved model)",
    )
    group.add_argument(
        "--min-confidence",
        metavar="auto|P",
        help="below this top probability a prediction's decision is 'not sure': auto "
        "(default: answers 95%% of validation images) or a number, 0 = always answer",
    )
    group.add_argument(
        "--target-accuracy",
        type=float,
        metavar="A",
        help="with --min-confidence auto: the lowest threshold whose answers are A right "
        "on validation (e.g. 0.95)",
    )
    group.add_argument(
        "--tta",
        action="store_const",
        const=True,
        help="also score validation and test with test-time augmentation (the image, its "
        "mirror, four corner crops: 6 passes averaged); the summary and metadata say "
        "whether it helped",
    )
    group.add_argument(
        "--ood",
        metavar="DIR",
        help="images of none of the classes: measures how well the model tells them apart "
        "(AUROC, share the threshold rejects)",
    )


def _add_release_options(group: argparse._ArgumentGroup) -> None:
    choice = group.add_mutually_exclusive_group()
    choice.add_argument(
        "--promote",
        action="store_const",
        const=True,
        help="label the new version stable: it becomes the default version at once (without "
        "a stable label the newest version is the default anyway)",
    )
    choice.add_argument(
        "--promote-if-better",
        action="store_const",
        const=True,
        help="label the new version stable only if its accuracy beats the default version's "
        "on the same images (the new version's test split of DATA, else its validation "
        "split); otherwise the default version keeps serving, labelled stable",
    )
    group.add_argument(
        "--keep",
        type=int,
        metavar="N",
        help="then delete all but the newest N versions; labelled versions, the default, "
        "rollback targets and the parents of those kept always stay",
    )


def _add_run_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--int8",
        action="store_const",
        const=True,
        help="also quantize the model to INT8 (calibrated on training images) and record "
        "its agreement with the float model on validation and test; the service serves "
        "it where the agreement passes KTL_INT8_MIN_AGREEMENT",
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
        "--tensorboard",
        metavar="DIR",
        help="write TensorBoard logs of both phases under DIR/NAME (losses, accuracy, rate)",
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
        "--restart",
        action="store_const",
        const=True,
        help="discard this name's interrupted job and start over",
    )
    group.add_argument(
        "--strategy",
        choices=STRATEGIES,
        help="devices and machines: mirrored (every local GPU), multiworker (the workers "
        "in $TF_CONFIG; each decodes its shard of the files, worker 0 or the chief "
        "publishes), auto (default: multiworker when TF_CONFIG names several workers, "
        "mirrored with several GPUs, else one device)",
    )


def _add_doctor_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--exclude",
        metavar="CSV",
        help="a ktl doctor suspects.csv: leave out the files of its rows whose action is exclude",
    )
    group.add_argument(
        "--relabel",
        metavar="CSV",
        help="a ktl doctor suspects.csv: give the files of its rows whose action is relabel "
        "their suggested_label",
    )


def train_config(args: argparse.Namespace, ignore: tuple[str, ...] = ()):
    """The job configuration from ``--config`` and flags (flags win); ``ignore``: flags
    of another command that are not the job's."""
    from training.config import build_config, read_toml

    file_settings = read_toml(args.config) if args.config else {}
    skipped = ("command", "config", "json", "run", *ignore)
    flags = {key: value for key, value in vars(args).items() if key not in skipped}
    if flags.get("store") is None and "store" not in file_settings:
        flags["store"] = store_default()
    return build_config(file_settings, flags)


def run(args: argparse.Namespace) -> int:
    config = train_config(args)  # settings are checked before TensorFlow is imported
    from training.job import run_job

    result = run_job(config)
    print_json(result) if args.json else print_summary(result)
    return 0
