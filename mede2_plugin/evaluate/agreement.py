"""Judge-human agreement (paper Figure 3: human − judge score differences, σ = 1.02, 68.9 % within ±σ).

Scores come from CSV or JSONL files with an id column and a score column; human and judge may
sit in one file (two columns) or two files. A score is a number, or a mapping / list of criteria
(the MMRP judge's five "Yes"/"No" fields) whose Yes entries are counted, read by the shared
readers (:func:`mede2_plugin.core.replies.parse_json`, :func:`mede2_plugin.core.replies.yes_no`): a JSON
object or a judge's reply text holding one (fenced, with prose around it), with ``"Yes"``,
``"yes"``, ``true``, ``"y"``, ``1``, ``"pass"`` counted as Yes.

Definitions (the paper does not spell them out; these are ours):

* difference ``d = human − judge`` per item present in both;
* ``sigma`` - the standard deviation of the differences (population, ``ddof=0``; a setting);
* ``share_within_sigma`` - the share of items with ``|d − mean(d)| <= sigma``;
  ``share_within_sigma_of_zero`` - the share with ``|d| <= sigma`` (distance from perfect agreement).
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mede2_plugin.core.files import atomic_write_json, atomic_writer
from mede2_plugin.core.jsonl import read_jsonl
from mede2_plugin.core.replies import parse_json, yes_no


def score_value(raw: Any, where: str) -> float:
    """A numeric score from a number, a numeric string, or a mapping/list of Yes/No criteria."""
    if isinstance(raw, bool):
        return float(raw)
    if isinstance(raw, (int, float)):
        if math.isnan(raw):
            raise ValueError(f"{where}: score is NaN")
        return float(raw)
    if isinstance(raw, str):
        try:
            return float(raw.strip())
        except ValueError:
            pass
        verdict = parse_json(raw)  # a judge reply as the judge wrote it: fenced, with prose, ...
        if isinstance(verdict, (dict, list)):
            return score_value(verdict, where)
        raise ValueError(f"{where}: score {raw!r} is neither a number nor a JSON verdict")
    if isinstance(raw, dict):
        return float(sum(yes_no(v) is True for v in raw.values()))
    if isinstance(raw, list):
        return float(sum(yes_no(v) is True for v in raw))
    raise ValueError(f"{where}: no score ({raw!r})")


def read_scores(path: str | Path, score_field: str, id_field: str = "id") -> dict[str, float]:
    """``{id: score}`` from a CSV/TSV or JSONL file; bad rows raise naming file and line."""
    path = Path(path)
    rows: list[tuple[str, dict[str, Any]]] = []
    if path.suffix.lower() in {".csv", ".tsv"}:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            _ = reader.fieldnames  # reads the header, so line_num counts it
            end = reader.line_num
            for row in reader:
                rows.append((f"{path}:{end + 1}", row))
                end = reader.line_num
    else:
        rows = [(f"{path}:record {n}", row) for n, row in enumerate(read_jsonl(path), start=1)]
    scores: dict[str, float] = {}
    for where, row in rows:
        if id_field not in row or score_field not in row:
            raise ValueError(f"{where}: needs columns {id_field!r} and {score_field!r}, has {sorted(row)}")
        key = str(row[id_field])
        if key in scores:
            raise ValueError(f"{where}: id {key!r} appears twice")
        scores[key] = score_value(row[score_field], where)
    return scores


@dataclass
class Agreement:
    """The agreement statistics of paired human and judge scores."""

    items: int
    mean_difference: float
    sigma: float
    share_within_sigma: float
    share_within_sigma_of_zero: float
    exact_agreement: float
    mean_absolute_difference: float
    histogram: dict[str, int] = field(default_factory=dict)
    only_human: list[str] = field(default_factory=list)
    only_judge: list[str] = field(default_factory=list)
    ddof: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def agreement(human: dict[str, float], judge: dict[str, float], ddof: int = 0) -> tuple[Agreement, list[dict[str, Any]]]:
    """Statistics over the ids both sides scored, and the per-item rows (id, human, judge, difference)."""
    common = [key for key in human if key in judge]
    if len(common) <= ddof:
        raise ValueError(f"only {len(common)} item(s) scored by both human and judge")
    items = [{"id": key, "human": human[key], "judge": judge[key], "difference": human[key] - judge[key]}
             for key in common]
    differences = [item["difference"] for item in items]
    mean = sum(differences) / len(differences)
    sigma = math.sqrt(sum((d - mean) ** 2 for d in differences) / (len(differences) - ddof))
    tolerance = 1e-12
    histogram = Counter(f"{d:g}" for d in differences)
    result = Agreement(
        items=len(items), mean_difference=mean, sigma=sigma,
        share_within_sigma=sum(abs(d - mean) <= sigma + tolerance for d in differences) / len(differences),
        share_within_sigma_of_zero=sum(abs(d) <= sigma + tolerance for d in differences) / len(differences),
        exact_agreement=sum(d == 0 for d in differences) / len(differences),
        mean_absolute_difference=sum(abs(d) for d in differences) / len(differences),
        histogram=dict(sorted(histogram.items(), key=lambda kv: float(kv[0]))),
        only_human=sorted(set(human) - set(judge)), only_judge=sorted(set(judge) - set(human)), ddof=ddof)
    return result, items


def plot_histogram(path: str | Path, differences: list[float], stats: Agreement, title: str = "") -> Path:
    """Histogram of human − judge differences with the mean and ±σ marked (Figure 3 style)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(6.4, 4.0))
    integral = all(float(d).is_integer() for d in differences)
    if integral:
        low, high = int(min(differences)), int(max(differences))
        bins = [x - 0.5 for x in range(low, high + 2)]
    else:
        bins = "auto"
    axis.hist(differences, bins=bins, color="C0", edgecolor="white")
    axis.axvline(stats.mean_difference, color="k", linewidth=1, label=f"mean {stats.mean_difference:+.2f}")
    for sign in (-1, 1):
        axis.axvline(stats.mean_difference + sign * stats.sigma, color="C3", linestyle="--", linewidth=1,
                     label=f"±σ = {stats.sigma:.2f} ({100 * stats.share_within_sigma:.1f} % within)" if sign > 0 else None)
    axis.set_xlabel("human score − judge score")
    axis.set_ylabel("items")
    axis.set_title(title or f"Judge-human agreement, {stats.items} items")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_agreement(out_dir: str | Path, stats: Agreement, items: list[dict[str, Any]], plot: bool = True) -> dict[str, Path]:
    """``agreement.json``, ``differences.csv`` and ``agreement_histogram.png`` in ``out_dir``."""
    out = Path(out_dir)
    written = {"json": out / "agreement.json", "csv": out / "differences.csv"}
    atomic_write_json(written["json"], stats.to_dict())
    with atomic_writer(written["csv"], text=True) as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "human", "judge", "difference"])
        writer.writeheader()
        writer.writerows(items)
    from mede2_plugin.evaluate.scaling import have_matplotlib

    if plot and have_matplotlib():
        written["png"] = plot_histogram(out / "agreement_histogram.png", [i["difference"] for i in items], stats)
    return written
