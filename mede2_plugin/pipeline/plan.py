"""``mede2 run PIPELINE.yaml --plan``: what the run would call and pay, before any call is made.

No model is called, no backend is built, no model is loaded, no simulated server is started.
Each selected step is judged as the run would judge it: a step that is up to date costs nothing;
the others ask their stage for the calls they would make (the stage's plan hook renders the real
requests with its own request builders, :class:`~mede2_plugin.core.stage.PlannedCalls`), passing
on the questions each step would keep, so later steps are planned from them. Requests already
answered in a results file or in the response cache cost nothing, so a plan of a half-done run
shows what is left to pay. Tokens and dollars: :mod:`mede2_plugin.client.estimate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mede2_plugin.client.estimate import CHARS_PER_TOKEN, RoleEstimate, estimate_calls
from mede2_plugin.core.files import atomic_write_json
from mede2_plugin.core.stage import PlannedCalls
from mede2_plugin.pipeline.config import SIMULATED, PipelineConfig
from mede2_plugin.pipeline.runner import select_stages, stage_fingerprint
from mede2_plugin.pipeline.state import FRESH, SKIP, ContentHasher, StageStore
from mede2_plugin.pipeline.steps import Context, Layout

COLUMNS = ("stage", "role", "model", "mode", "requests", "samples", "input tok", "output tok", "$ interactive",
           "$ batch")


@dataclass
class StepCalls:
    """The planned calls of one role of one step, and how the run would treat the step's outputs.

    Attributes:
        stage: the step's name.
        calls: the role's rendered calls.
        cache_dir: the response cache the run would give the role (None: none it can answer from).
        reuse_output: False when the run would move the step's previous outputs aside.
    """

    stage: str
    calls: PlannedCalls
    cache_dir: Path | None
    reuse_output: bool


def plan_calls(config: PipelineConfig, start: str | None = None,
               until: str | None = None) -> tuple[list[StepCalls], dict[str, str]]:
    """The calls of every selected step that is not up to date, in order (each step planned from
    the questions the earlier ones would keep), and each step's state (``to run`` / up to date)."""
    layout = Layout(config.out)
    hasher = ContentHasher(layout.state / "hashes.json")  # read, never saved
    context, store = Context(config, layout, hasher), StageStore(layout.out, hasher)
    found: list[StepCalls] = []
    steps: dict[str, str] = {}
    projected: dict[str, tuple[list, list]] = {}
    for stage in select_stages(start, until):
        decision, previous = store.decide(stage.name, stage_fingerprint(context, stage)[0])
        steps[stage.name] = "up to date: nothing to pay" if decision == SKIP else "to run"
        planned = None if decision == SKIP else stage.plan(context, projected)
        if planned is None:
            continue
        projected.update(planned.questions)
        for calls in planned.calls:
            calls.backend = calls.backend.replace(prices={**config.prices, **(calls.backend.prices or {})} or None)
            found.append(StepCalls(stage.name, calls, _cache_dir(context, calls.backend),
                                   not (decision == FRESH and previous is not None)))
    return found, steps


def plan_pipeline(config: PipelineConfig, start: str | None = None, until: str | None = None) -> dict[str, Any]:
    """The plan of ``mede2 run`` over ``config`` (``--from`` / ``--until``): rows, totals, warnings."""
    found, steps = plan_calls(config, start, until)
    rows = [estimate_calls(f.stage, f.calls, f.cache_dir, f.reuse_output) for f in found]
    return {"output_dir": str(Path(config.out).resolve()), "steps": steps, "rows": [r.to_dict() for r in rows],
            "totals": totals(rows), "warnings": warnings(rows)}


def _cache_dir(context: Context, backend: Any) -> Path | None:
    """The response cache the run would give an API role (a simulated role's answers are not
    cached across runs: its server's address changes)."""
    if backend.backend in ("local", "vllm") or backend.base_url == SIMULATED or backend.cache_dir == "off":
        return None
    return Path(backend.cache_dir) if backend.cache_dir else context.layout.cache / "api"


def totals(rows: list[RoleEstimate]) -> dict[str, Any]:
    """Sums (``[low, high]``) over the API roles, in dollars also "as configured" (each role at the
    price of its own ``mode``; a model without a batch price at its interactive one), and apart
    the work on your own GPUs (``own_gpus``: rollouts, evaluation)."""
    keys = ("requests", "samples", "input_tokens", "output_tokens")

    def summed(chosen: list[RoleEstimate]) -> dict[str, Any]:
        return {key: [sum(getattr(r, key)[i] for r in chosen) for i in (0, 1)] for key in keys}

    total = summed([r for r in rows if r.priced])
    for name in ("usd_interactive", "usd_batch", "usd_as_configured"):
        total[name] = [0.0, 0.0]
    for row in rows:
        if not row.priced or row.usd_interactive is None:
            continue
        batch = row.usd_batch or row.usd_interactive
        configured = batch if row.mode == "batch" else row.usd_interactive
        for name, value in (("usd_interactive", row.usd_interactive), ("usd_batch", batch),
                            ("usd_as_configured", configured)):
            total[name] = [round(a + b, 6) for a, b in zip(total[name], value)]
    total["own_gpus"] = summed([r for r in rows if not r.priced])
    return total


def warnings(rows: list[RoleEstimate]) -> list[str]:
    """One line per model without a known price (interactive, or batch for a ``mode: batch`` role)."""
    found: dict[str, str] = {}
    for row in rows:
        if not row.priced or not row.requests[1] or row.model in found:
            continue
        if row.usd_interactive is None:
            found[row.model] = (f"model {row.model!r} ({row.role}) has no known price: its calls are left out of the "
                                f"dollar totals; add prices: {{{row.model}: {{input: USD_per_Mtok, output: USD_per_Mtok}}}}")
        elif row.usd_batch is None and row.mode == "batch":
            found[row.model] = (f"model {row.model!r} ({row.role}) runs in mode: batch but has no batch price; add "
                                f"prices: {{{row.model}: {{..., batch: {{input: USD_per_Mtok, output: USD_per_Mtok}}}}}}")
    return list(found.values())


def _span(pair: list[Any], money: bool = False) -> str:
    if pair is None:
        return "unknown"
    low, high = pair
    text = (lambda v: f"{v:,.2f}") if money else (lambda v: f"{v:,}")
    return text(low) if low == high else f"{text(low)}-{text(high)}"


def format_plan(plan: dict[str, Any]) -> str:
    """The plan as a text table, the totals, how each figure was obtained, and the warnings."""
    table = [COLUMNS]
    shown = [r for r in plan["rows"] if r["requests"][1] or r["done"] or r["cached"]]
    for row in shown:
        usd = [_span(row["usd_interactive"], True), _span(row["usd_batch"], True)] if row["priced"] else ["(own GPUs)"] * 2
        model = row["model"] if row["priced"] else Path(row["model"]).name
        table.append((row["stage"], row["role"], model, row["mode"], _span(row["requests"]), _span(row["samples"]),
                      _span(row["input_tokens"]), _span(row["output_tokens"]), *usd))
    t = plan["totals"]
    table.append(("TOTAL (API roles)", "", "", "", _span(t["requests"]), _span(t["samples"]), _span(t["input_tokens"]),
                  _span(t["output_tokens"]), _span(t["usd_interactive"], True), _span(t["usd_batch"], True)))
    widths = [max(len(str(r[i])) for r in table) for i in range(len(COLUMNS))]
    lines = [f"MedE2 run plan for {plan['output_dir']} (no call made; a-b: the range where earlier answers decide)"]
    lines += ["  ".join(str(c).ljust(w) if i < 4 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
              for r in table]
    lines.insert(2, "-" * len(lines[1]))
    lines.insert(len(lines) - 1, "-" * len(lines[1]))
    gpus = t["own_gpus"]
    lines.append(f"as configured (each role at the price of its mode): ${_span(t['usd_as_configured'], True)}")
    lines.append(f"on your GPUs (rollouts, evaluation): {_span(gpus['requests'])} requests, {_span(gpus['samples'])} "
                 f"samples, {_span(gpus['output_tokens'])} output tokens at most")
    done = [name for name, state in plan["steps"].items() if state != "to run"]
    if done:
        lines.append(f"up to date, nothing to pay: {', '.join(done)}")
    lines.append("\nhow each figure was obtained (input tokens: the prompts as the run renders them, text at "
                 f"{CHARS_PER_TOKEN} characters per token, images as each provider bills them):")
    for row in shown:
        paid = f"; {row['done']} already answered, {row['cached']} in the response cache" if row["done"] or row["cached"] else ""
        extra = row["input_basis"].partition("; ")[2]
        lines.append(f"  {row['stage']} / {row['role']}: requests: {row['count_basis']}{paid}; output: {row['output_basis']}"
                     + (f"; input {extra}" if extra else ""))
        lines += [f"      note: {note}" for note in row["notes"]]
    lines += [f"warning: {w}" for w in plan["warnings"]]
    return "\n".join(lines)


def write_plan(plan: dict[str, Any], path: str | Path) -> None:
    atomic_write_json(Path(path), plan)
