"""``ktl score NAME[:VERSION] INPUT --out FILE.jsonl``: a scoring job, one JSONL line
per image of a folder, a CSV or a URL prefix, resumable and shardable
(models/batch/, docs/scoring.md)."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from cli.common import MODEL_HELP, add_json, add_store, note, print_json
from models.choices import ENGINES
from models.errors import ConfigError

# What an Indexed Job gives each pod (Kubernetes sets it): the pod's shard with --shards.
INDEX_VARIABLE = "JOB_COMPLETION_INDEX"
# The service's default KTL_MAX_BATCH_SIZE: on a CPU, batches of 64 at 224 px ran at half
# the images/s of 8 or 16 here (the activations outgrow the caches).
BATCH = 16


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "score",
        help="score every image of a folder, CSV or bucket prefix into a JSONL file",
        description="Classify every image of INPUT with a published version and append "
        "one JSON line per image to --out: the HTTP native predict body for that image "
        '(with an "image" key naming it), or its error. A rerun skips the images '
        "already in the file. See docs/scoring.md.",
    )
    parser.add_argument("model", metavar="NAME[:VERSION]", help=MODEL_HELP)
    parser.add_argument(
        "input",
        metavar="INPUT",
        help="a folder (recursively), a CSV of image paths (column path or image, else "
        "the first; relative to the CSV's folder), or a URL prefix (memory://, s3://...)",
    )
    parser.add_argument("--out", required=True, metavar="FILE", help="the JSONL file")
    parser.add_argument(
        "--batch",
        type=int,
        default=BATCH,
        help=f"images per forward pass and per write (default {BATCH}, as the service's batches)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="decoding threads (default: the CPUs, at most 8)",
    )
    shards = parser.add_mutually_exclusive_group()
    shards.add_argument("--shard", metavar="I/N", help="score only shard I of N (from 0)")
    shards.add_argument(
        "--shards",
        type=int,
        metavar="N",
        help=f"score shard ${INDEX_VARIABLE} of N (a Kubernetes Indexed Job's pod index)",
    )
    parser.add_argument("--top-k", type=int, default=5, help="labels per line (default 5)")
    parser.add_argument(
        "--min-confidence",
        type=float,
        metavar="P",
        help="as ktl predict's (default: the version's threshold)",
    )
    parser.add_argument(
        "--engine",
        default="auto",
        choices=ENGINES,
        help="auto (default, as the service: INT8 where it passed KTL_INT8_MIN_AGREEMENT), "
        "keras, or int8",
    )
    add_store(parser)
    add_json(parser, "print the summary as JSON")
    return parser


def shard_of_args(args: argparse.Namespace, environ=os.environ) -> tuple[int, int]:
    """``(index, count)``: ``--shard I/N``, or ``--shards N`` with the index from
    ``$JOB_COMPLETION_INDEX``, else ``(0, 1)``: everything."""
    from models.batch.inputs import parse_shard

    if args.shard is not None:
        return parse_shard(args.shard)
    if args.shards is None:
        return 0, 1
    index = environ.get(INDEX_VARIABLE, "")
    if not index.strip().isdigit():
        raise ConfigError(
            f"--shards needs ${INDEX_VARIABLE} (set by an Indexed Job), or use --shard I/N"
        )
    return parse_shard(f"{index.strip()}/{args.shards}")


def run(args: argparse.Namespace) -> int:
    from cli.common import load_reference
    from models.batch.inputs import list_inputs
    from models.batch.job import ScoreOptions, score
    from models.batch.output import Writer, done_images, part_path
    from models.batch.progress import Progress
    from models.store import ModelStore

    if args.batch < 1 or args.threads < 1 or args.top_k < 1:
        raise ConfigError("--batch, --threads and --top-k must be at least 1")
    if args.min_confidence is not None and not 0 <= args.min_confidence <= 1:
        raise ConfigError("--min-confidence must be from 0 to 1")
    index, count = shard_of_args(args)
    inputs = list_inputs(args.input).shard(index, count)
    bundle = load_reference(args.model, ModelStore(args.store))
    out = part_path(Path(args.out), index, count)
    done = done_images(out, bundle.name, bundle.version)
    todo = replace(inputs, keys=[key for key in inputs.keys if key not in done])
    engine = bundle.engine(args.engine, args.settings.int8_min_agreement)
    shard = f" (shard {index} of {count})" if count > 1 else ""
    note(
        f"Scoring {len(todo.keys):,} images{shard} with {bundle.name} version "
        f"{bundle.version} ({engine.engine} engine) into {out}"
        + (f"; {len(inputs.keys) - len(todo.keys):,} already there" if done else "")
    )
    writer = Writer(out)
    try:
        options = ScoreOptions(args.batch, args.threads, args.top_k, args.min_confidence)
        summary = score(bundle, engine, todo, writer, options, Progress(len(todo.keys), sys.stderr))
    finally:
        writer.close()
    result = {
        "out": str(out),
        "model": bundle.name,
        "version": bundle.version,
        "engine": engine.engine,
        "images": len(inputs.keys),
        "skipped": len(done & set(inputs.keys)),
        "scored": summary.scored,
        "errors": summary.errors,
        "seconds": round(summary.seconds, 3),
        "images_per_second": round(summary.rate, 2),
    }
    if args.json:
        print_json(result)
    else:
        print(
            f"Wrote {summary.scored + summary.errors:,} lines to {out} ({summary.errors:,} "
            f"errors) in {summary.seconds:.1f} s, {summary.rate:,.1f} images/s"
        )
    return 0
