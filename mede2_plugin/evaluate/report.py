"""Side-by-side reports of several models (paper Table 1) and their scaling curves (Figure 5).

Input: evaluation folders written by ``mede2 eval`` (``<out>/<model>/<benchmark>/metrics.json``).
Output: a Markdown table (accuracy %, and for every model but the base its delta to the base),
the same numbers as CSV (one row per model, benchmark and split), and when the runs sampled k > 1
outputs, one Figure-5-like PNG and CSV with every model's pass@n and MV@n curves.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from mede2_plugin.core.files import atomic_write_text, atomic_writer
from mede2_plugin.evaluate.scaling import have_matplotlib, plot_curves, write_curve_csv

Metrics = dict[str, dict[str, dict[str, Any]]]  # model -> benchmark -> metrics.json


def collect_metrics(folders: list[str | Path]) -> Metrics:
    """Read metrics from model folders (``<model>/<benchmark>/metrics.json``) or evaluation roots
    (``<root>/<model>/<benchmark>/metrics.json``), keeping the models in the order given."""
    found: Metrics = {}
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: not an evaluation folder")
        files = sorted(folder.glob("*/metrics.json")) or sorted(folder.glob("*/*/metrics.json"))
        if not files:
            raise FileNotFoundError(f"{folder}: no */metrics.json or */*/metrics.json inside")
        for path in files:
            metrics = json.loads(path.read_text(encoding="utf-8"))
            model = metrics.get("model") or path.parent.parent.name
            found.setdefault(model, {})[metrics.get("benchmark") or path.parent.name] = metrics
    return found


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def table_rows(metrics: Metrics, base: str, splits: bool = False) -> list[dict[str, Any]]:
    """Flat rows: model, benchmark, split, value, accuracy, delta to base, counts."""
    rows = []
    for model, benchmarks in metrics.items():
        for name, entry in benchmarks.items():
            groups = [("overall", "", entry)]
            if splits:
                groups += [(split, value, summary) for split, values in entry.get("splits", {}).items()
                           for value, summary in values.items()]
            for split, value, summary in groups:
                base_entry = metrics.get(base, {}).get(name)
                if base_entry is not None and split != "overall":
                    base_entry = base_entry.get("splits", {}).get(split, {}).get(value)
                base_accuracy = base_entry.get("accuracy") if base_entry else None
                rows.append({
                    "model": model, "benchmark": name, "title": entry.get("title", name), "split": split,
                    "value": value, "accuracy": summary.get("accuracy"),
                    "delta_to_base": None if model == base or base_accuracy is None or summary.get("accuracy") is None
                    else summary["accuracy"] - base_accuracy,
                    "questions": summary.get("questions"), "answered": summary.get("answered"),
                    "unparseable": summary.get("unparseable"), "samples": summary.get("samples"),
                    "complete": entry.get("complete", True) if split == "overall" else None,
                    "majority_vote": entry.get("majority_vote") if split == "overall" else None,
                })
    return rows


def markdown_table(metrics: Metrics, base: str, splits: bool = False) -> str:
    """Table 1 style: rows are models, columns benchmarks (and their splits), cells ``acc (Δ)``."""
    columns: list[tuple[str, str, str, str]] = []  # (benchmark, split, value, header)
    benchmarks: dict[str, str] = {}
    for entries in metrics.values():
        for name, entry in entries.items():
            benchmarks.setdefault(name, entry.get("title", name))
    for name, title in benchmarks.items():
        columns.append((name, "overall", "", title))
        if splits:
            seen = []
            for entries in metrics.values():
                for split, values in entries.get(name, {}).get("splits", {}).items():
                    seen += [(split, v) for v in values if (split, v) not in seen]
            columns += [(name, split, value, f"{title} · {value}") for split, value in seen]
    lookup = {(r["model"], r["benchmark"], r["split"], r["value"]): r for r in table_rows(metrics, base, splits)}
    lines = ["| Model | " + " | ".join(c[3] for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    notes = set()
    for model in metrics:
        cells = []
        for name, split, value, _ in columns:
            row = lookup.get((model, name, split, value))
            if row is None:
                cells.append("—")
                continue
            cell = _percent(row["accuracy"])
            if row["delta_to_base"] is not None:
                cell += f" ({100 * row['delta_to_base']:+.2f})"
            if row["complete"] is False:
                cell += "*"
                notes.add("* incomplete: some questions have no generation yet (rerun `mede2 eval` to finish)")
            cells.append(cell)
        lines.append(f"| {model}{' (base)' if model == base else ''} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Accuracy in %; in brackets the change against the base model `{base}` in points.")
    unparseable = [f"{model} / {metrics[model][name].get('title', name)}: {metrics[model][name].get('unparseable', 0)} "
                   f"of {metrics[model][name].get('samples', 0)}"
                   for model in metrics for name in metrics[model] if metrics[model][name].get("unparseable")]
    if unparseable:
        lines.append("Unparseable answers (counted as wrong, never as a letter): " + "; ".join(unparseable) + ".")
    lines += sorted(notes)
    return "\n".join(lines) + "\n"


def write_report(metrics: Metrics, out_prefix: str | Path, base: str | None = None, splits: bool = False,
                 plot: bool = True) -> dict[str, Path]:
    """Write ``<prefix>.md``, ``<prefix>.csv`` and, with scaling data, ``<prefix>_scaling.{csv,png}``."""
    if not metrics:
        raise ValueError("no evaluation results to report")
    base = base or next(iter(metrics))
    if base not in metrics:
        raise ValueError(f"base model {base!r} is not among the results: {', '.join(metrics)}")
    prefix = Path(out_prefix)
    written = {"markdown": prefix.with_name(prefix.name + ".md"), "csv": prefix.with_name(prefix.name + ".csv")}
    atomic_write_text(written["markdown"], markdown_table(metrics, base, splits))
    fields = ["model", "benchmark", "title", "split", "value", "accuracy", "delta_to_base", "questions",
              "answered", "unparseable", "samples", "complete", "majority_vote"]
    with atomic_writer(written["csv"], text=True) as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in table_rows(metrics, base, splits):
            for key in ("accuracy", "delta_to_base", "majority_vote"):
                row[key] = "" if row[key] is None else f"{100 * row[key]:.2f}"
            writer.writerow(row)
    curves: dict[str, dict[str, list[dict[str, Any]]]] = {}
    titles: dict[str, str] = {}
    for model, entries in metrics.items():
        for name, entry in entries.items():
            if entry.get("scaling"):
                curves.setdefault(name, {})[model] = entry["scaling"]
                titles[name] = entry.get("title", name)
    if curves:
        written["scaling_csv"] = write_curve_csv(prefix.with_name(prefix.name + "_scaling.csv"), curves)
        if plot and have_matplotlib():
            written["scaling_png"] = plot_curves(prefix.with_name(prefix.name + "_scaling.png"), curves, titles)
    return written
