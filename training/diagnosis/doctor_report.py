"""What ``ktl doctor --out DIR`` writes: ``suspects.csv`` (the rows a person edits,
then gives to ``ktl train --exclude/--relabel``), ``doctor.json`` (everything) and
``report.html`` (one self-contained page: the report page's stylesheet and the
thumbnails inline, since it is opened from disk, not served)."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from importlib import resources
from pathlib import Path

from PIL import Image

from models.preprocessing import ImageError, load_for_display
from training.dataset.corrections import KINDS

# reason: why the row is there, so a person can judge it in a spreadsheet alone
CSV_HEADER = ("path", "given_label", "suggested_label", "kind", "score", "action", "reason")
THUMBNAIL = 96
_MAX_SHOWN = 200  # thumbnails per section; the CSV and JSON hold every row


def write_outputs(result: dict, out: str | Path) -> dict[str, str]:
    """Write the three files into ``out`` (created); returns their paths by kind."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": folder / "suspects.csv",
        "json": folder / "doctor.json",
        "html": folder / "report.html",
    }
    write_csv(result["suspects"], paths["csv"])
    paths["json"].write_text(json.dumps(result, indent=2) + "\n")
    paths["html"].write_text(render_html(result))
    return {kind: str(path) for kind, path in paths.items()}


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_HEADER)
        for row in rows:
            writer.writerow([row[key] for key in CSV_HEADER])


def _stylesheet() -> str:
    return (resources.files("service") / "static" / "style.css").read_text()


def _thumbnail(file: Path) -> str:
    try:
        pixels = load_for_display(file, THUMBNAIL)
    except (ImageError, OSError):
        return ""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _figure(root: Path, row: dict, caption: str) -> str:
    source = _thumbnail(root / row["path"])
    alt = html.escape(f"{row['path']} ({row['given_label']})")
    return (
        f'<li><figure><img src="{source}" alt="{alt}">'
        f"<figcaption>{caption}</figcaption></figure></li>"
    )


def _gallery(root: Path, rows: list[dict], caption) -> str:
    shown = "".join(_figure(root, row, caption(row)) for row in rows[:_MAX_SHOWN])
    more = f"<p>{len(rows) - _MAX_SHOWN} more in suspects.csv</p>" if len(rows) > _MAX_SHOWN else ""
    return f'<ul class="worst">{shown}</ul>{more}' if rows else "<p>None found.</p>"


def _label_caption(row: dict) -> str:
    return (
        f"<code>{html.escape(row['path'])}</code><br>{html.escape(row['given_label'])} → "
        f"<strong>{html.escape(row['suggested_label'])}</strong> ({row['score']:.2f})"
    )


def _plain_caption(row: dict) -> str:
    return (
        f"<code>{html.escape(row['path'])}</code><br>{html.escape(row['given_label'])}: "
        f"{html.escape(row['reason'])} → {row['action']}"
    )


def _section(title: str, body: str) -> str:
    return f'<section class="card"><h2>{html.escape(title)}</h2>{body}</section>'


def _summary(result: dict) -> str:
    p = result["probe"]
    multi = result.get("task") == "multilabel"  # label sets; accuracy per label
    baseline = "each label its more common answer" if multi else "always the largest class"
    items = {
        "data": f"{result['data']} ({result['layout']}): {result['images']} images, "
        f"{len(result['labels'])} {'labels' if multi else 'classes'}, "
        f"{len(result['skipped'])} skipped",
        "probabilities from": p["description"],
        "out-of-sample accuracy": f"{p['accuracy']:.1%}{' per label' if multi else ''} "
        f"({baseline}: {p['majority_baseline']:.1%})",
        "suspects": f"{len(result['suspects'])} rows in suspects.csv",
        "took": f"{result['seconds']:.1f} s",
    }
    if p.get("note"):
        items["label suggestions"] = p["note"]
    rows = "".join(
        f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in items.items()
    )
    return f'<dl class="info">{rows}</dl>'


def _duplicates(root: Path, result: dict) -> str:
    rows = [r for r in result["suspects"] if r["kind"] == "near_duplicate"]
    if not rows:
        return "<p>None found.</p>"
    parts = []
    for group in result["near_duplicate_groups"][:_MAX_SHOWN]:
        members = [r for r in rows if r["group"] == group["group"]]
        warning = (
            f' <span class="error">spans {", ".join(group["splits"])}</span>'
            if group["across_splits"]
            else ""
        )
        parts.append(f"<h3>Group {group['group']}{warning}</h3>")
        parts.append(_gallery(root, members, _plain_caption))
    return "".join(parts)


def _balance(result: dict) -> str:
    weights = result["balance"]["class_weights"] or {}
    head = (
        "<tr><th>class</th><th class='num'>images</th><th class='num'>train</th>"
        "<th class='num'>validation</th><th class='num'>test</th>"
        "<th class='num'>class weight</th></tr>"
    )
    body = "".join(
        f"<tr><td>{html.escape(label)}</td><td class='num'>{c['images']}</td>"
        f"<td class='num'>{c['train']}</td><td class='num'>{c['val']}</td>"
        f"<td class='num'>{c['test']}</td><td class='num'>{weights.get(label, 1.0):g}</td></tr>"
        for label, c in result["balance"]["classes"].items()
    )
    return (
        '<div class="scroll" tabindex="0" role="region" aria-label="balance (scrolls sideways)">'
        f"<table><thead>{head}</thead><tbody>{body}</tbody></table></div>"
    )


def render_html(result: dict) -> str:
    """The report as one HTML page with everything inline."""
    root = Path(result["root"])
    by_kind = {kind: [r for r in result["suspects"] if r["kind"] == kind] for kind in KINDS}
    probe = result["probe"]
    note = f"<p>{html.escape(probe['note'])}</p>" if probe.get("note") else ""
    listed = probe.get("useful", not note)  # a weak but useful probe's, pre-filled review
    label_body = note + (_gallery(root, by_kind["label_issue"], _label_caption) if listed else "")
    sections = [
        _section("Summary", _summary(result)),
        _section("Label issues (most suspect first)", label_body),
        _section("Near-duplicates", _duplicates(root, result)),
        _section("Odd images", _gallery(root, by_kind["odd_image"], _plain_caption)),
        _section("Balance (split as ktl train would draw it)", _balance(result)),
    ]
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>ktl doctor — {html.escape(result['data'])}</title>\n"
        f"<style>\n{_stylesheet()}</style>\n</head>\n<body>\n"
        f"<header><h1>Dataset doctor</h1><p>{html.escape(result['data'])}</p></header>\n"
        f"<main>\n{''.join(sections)}\n</main>\n</body>\n</html>\n"
    )
