"""The calls curation would make, for ``mede2 run --plan`` (nothing is sent).

Each bank is loaded and checked for leakage as the run does (no model call; images a benchmark
loader extracts go to a temporary folder), then the steps' own request builders render every
request. A question's fate is followed step by step: certain
(it reaches the step whatever the models answer), possible (it depends on answers not given
yet), or out. Answers already in a step's results file decide exactly: a question the baseline
solver has answered is known to need the strong solver or not.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from mede2_plugin.core.jsonl import latest_records
from mede2_plugin.core.questions import Question
from mede2_plugin.core.stage import PlannedCalls
from mede2_plugin.core.steps import PENDING_PREFIX
from mede2_plugin.curate.config import CurateConfig
from mede2_plugin.curate.pipeline import step_dir

#: a question's fate at a step: True certain, None possible (absent: out)
Fate = dict[str, bool | None]


def _split(questions: list[Question], fate: Fate, asked: Any = lambda q: True) -> tuple[list, list]:
    """The questions (filtered by ``asked``) that certainly, and that possibly, reach a step."""
    chosen = [q for q in questions if q.id in fate and asked(q)]
    return [q for q in chosen if fate[q.id]], [q for q in chosen if fate[q.id] is None]


def _narrow(fate: Fate, decided: dict[str, bool | None]) -> Fate:
    """``fate`` after a step deciding ``decided`` (True kept, False dropped, None unknown)."""
    out: Fate = {}
    for qid, before in fate.items():
        after = decided.get(qid)
        if after is not False:
            out[qid] = True if before and after else None
    return out


def _calls(role: str, backend: Any, output: Path, build: Any, split: tuple[list, list], basis: str) -> PlannedCalls:
    certain, possible = split
    return PlannedCalls(role, backend, output, [build(q) for q in certain], [build(q) for q in possible], basis)


def _leakage(config: CurateConfig, questions: list[Question]) -> dict[str, bool | None]:
    from mede2_plugin.curate.leakage import build_index, leakage_record

    if not config.leakage.benchmarks:
        return {}
    with tempfile.TemporaryDirectory(prefix="mede2-plan-") as scratch:  # images a loader extracts go here
        sources = [dataclasses.replace(source, options={
            key: f"{scratch}/{number}" if key in source.path_options() and not Path(value).exists() else value
            for key, value in source.options.items()}) for number, source in enumerate(config.leakage.benchmarks)]
        cfg = dataclasses.replace(config.leakage, benchmarks=sources)
        index, _ = build_index(cfg)
    return {q.id: leakage_record(q, index.best_match(q), cfg)["kept"] for q in questions}


def _difficulty(config: CurateConfig, questions: list[Question], fate: Fate) -> tuple[list[PlannedCalls], Fate]:
    from mede2_plugin.curate.difficulty import (
        baseline_solved,
        decide,
        solver_attempts,
        solver_request,
    )

    cfg, folder = config.difficulty, step_dir(config, "difficulty")
    answerable = [q for q in questions if q.answer]
    fate = {qid: f for qid, f in fate.items() if qid in {q.id for q in answerable}}
    calls, baseline = [], {}
    if cfg.baseline is not None:
        path = folder / f"{cfg.baseline.label}.results.jsonl"
        rows = latest_records(path)
        calls.append(_calls("baseline_solver", cfg.baseline.backend, path,
                            lambda q: solver_request(q, cfg.baseline, config), _split(answerable, fate),
                            "one per question that reaches the difficulty filter"))
        baseline = {q.id: solver_attempts(q, cfg.baseline, rows.get(q.id)) for q in answerable}

    def needed(q: Question) -> bool | None:
        if cfg.baseline is None or cfg.strong_on_all:
            return True
        solved = baseline_solved(baseline[q.id], cfg)
        return None if solved is None else (solved is False or not cfg.drop_baseline_solved)

    need = {q.id: needed(q) for q in answerable}
    strong_fate = _narrow(fate, need)
    strong_entries: dict[str, list] = {q.id: [] for q in answerable}
    for index, solver in enumerate(cfg.strong):
        path = folder / f"{solver.label}.results.jsonl"
        rows = latest_records(path)
        calls.append(_calls(f"strong_solver[{index}]", solver.backend, path, lambda q, s=solver: solver_request(q, s, config),
                            _split(answerable, strong_fate), "one per question the baseline solver does not solve "
                            "(exact once it has answered; every question before)"))
        for q in answerable:
            strong_entries[q.id].append(solver_attempts(q, solver, rows.get(q.id), asked=need[q.id] is not False))
    decided = {}
    for q in answerable:
        record = {"id": q.id, "answer": q.answer, "baseline": baseline.get(q.id), "strong": strong_entries[q.id]}
        kept, reason = decide(record, cfg)
        decided[q.id] = None if reason.startswith(PENDING_PREFIX) else kept
    return calls, _narrow(fate, decided)


def _classify(config: CurateConfig, questions: list[Question], fate: Fate) -> tuple[list[PlannedCalls], Fate]:
    from mede2_plugin.core.steps import slug
    from mede2_plugin.curate.classify import classification_record, classify_request

    cfg = config.classify
    path = step_dir(config, "classify") / f"{slug(cfg.classifier.model)}.results.jsonl"
    rows = latest_records(path)
    asks = lambda q: bool(q.images) or cfg.text_questions == "classify"
    call = _calls("classifier", cfg.classifier, path, lambda q: classify_request(q, cfg, config),
                  _split(questions, fate, asks), "one per image question that reaches the classifier")
    decided = {}
    for q in questions:
        record = classification_record(q, rows.get(q.id), cfg, asks(q))
        decided[q.id] = None if record["reason"].startswith(PENDING_PREFIX) else record["kept"]
    return [call], _narrow(fate, decided)


def _strip(config: CurateConfig, questions: list[Question], fate: Fate) -> tuple[list[PlannedCalls], Fate, dict]:
    from mede2_plugin.core.steps import slug
    from mede2_plugin.curate.captions import strip_record, strip_request

    cfg = config.strip
    path = step_dir(config, "strip") / f"{slug(cfg.rewriter.model)}.results.jsonl"
    rows = latest_records(path)
    asks = lambda q: bool(q.images) or cfg.text_questions == "strip"
    call = _calls("rewriter", cfg.rewriter, path, lambda q: strip_request(q, cfg, config),
                  _split(questions, fate, asks), "one per image question that reaches caption stripping")
    decided, rewritten = {}, {}
    for q in questions:
        record, rewritten[q.id] = strip_record(q, rows.get(q.id), cfg, asks(q))
        decided[q.id] = None if record["reason"].startswith(PENDING_PREFIX) else record["kept"]
    return [call], _narrow(fate, decided), rewritten


def plan_bank(config: CurateConfig) -> tuple[list[PlannedCalls], list[Question], list[Question]]:
    """The calls curating one bank would make, and the questions it would keep: ``(calls,
    certain, possible)`` (caption-stripped where the rewrite is known)."""
    roots = [r for r in (config.media_dir, *config.media_roots) if r]
    questions = config.bank.load(media_roots=roots, allow_outside_media=config.allow_outside_media).questions
    fate: Fate = {q.id: True for q in questions}
    calls: list[PlannedCalls] = []
    rewritten: dict[str, Question] = {}
    for step in config.steps:
        current = [q for q in questions if q.id in fate]
        if step == "leakage":
            fate = _narrow(fate, _leakage(config, current))
        elif step == "difficulty":
            found, fate = _difficulty(config, current, fate)
            calls += found
        elif step == "classify":
            found, fate = _classify(config, current, fate)
            calls += found
        elif step == "strip":
            found, fate, rewritten = _strip(config, current, fate)
            calls += found
    final = [rewritten.get(q.id, q) for q in questions if q.id in fate]
    return calls, [q for q in final if fate[q.id]], [q for q in final if fate[q.id] is None]
