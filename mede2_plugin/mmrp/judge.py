"""The MMRP judge: rule pre-screen, then the paper's Appendix-A prompt for what passes.

For every rolled-out question, each candidate is first pre-screened
(:func:`mede2_plugin.mmrp.prescreen.prescreen`); a wrong or unparseable final answer fails
criterion 1 and makes the candidate a negative without a judge call (``send_all`` judges it
anyway, the paper's protocol). The others go to the judge with the question's images, the ground
truth and the candidate (``templates/prompts/mmrp_judge.j2``), asking for JSON through a response
schema. The verdict is read from the reply's text by :func:`mede2_plugin.mmrp.criteria.parse_verdict`
(the reply shapes it accepts are listed there); a reply that holds no valid five-field Yes/No
verdict is asked again as a new request (``<question id>/<candidate>#<attempt>``); after
``max_attempts`` it is recorded as *unjudged*.

Output: one *judged-question* row per question (``JsonlStore`` keyed by question id), the input
of the pair builder and of the ``mede2_judged`` LLaMA-Factory format. Every field has one type in
every row, so ``datasets`` loads the file::

    {"id", "source", "system", "prompt", "images": [paths], "answer": "B", "answer_text",
     "complete": bool, "judge_backend", "judge_model", "send_all": bool,
     "rollout_usage": {"prompt_tokens", "completion_tokens"}, "rollout_cost_usd",
     "candidates": [{"index", "text", "finish_reason", "extracted", "prescreen", "status",
                     "reason", "verdict": {criterion: "Yes" | "No" | ""}, "judge_attempts",
                     "judge_raw", "judge_usage": {...}, "judge_cost_usd"}]}

``status`` is ``positive`` / ``negative`` / ``unjudged``. ``complete`` is False when a judge call
failed outright or was never made (budget, interruption): a rerun judges such questions again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mede2_plugin.core.chat_format import image_part
from mede2_plugin.core.jsonl import JsonlStore, read_jsonl
from mede2_plugin.core.prompts import render
from mede2_plugin.mmrp.criteria import (
    ANSWER_CORRECTNESS,
    CRITERIA,
    NO,
    VERDICT_SCHEMA,
    VerdictError,
    classify,
    empty_verdict,
    failed_criteria,
    parse_verdict,
)
from mede2_plugin.mmrp.prescreen import prescreen
from mede2_plugin.mmrp.rollout import OK, results_path_for

JUDGE_TEMPLATE = "prompts/mmrp_judge.j2"
QUESTION_TEMPLATE = "prompts/mmrp_question.j2"


@dataclass
class JudgeConfig:
    """Settings of the judge stage.

    Attributes:
        send_all: judge every candidate, including those the pre-screen already failed (the
            paper's protocol, more calls); False sends only candidates with the right answer.
        max_attempts: judge calls per candidate until a valid verdict (first call included);
            then the candidate is recorded as unjudged.
        temperature: judge sampling temperature (the paper does not say; 0 for repeatable verdicts).
        max_tokens: most output tokens of a verdict (None: the provider's default; thinking
            models such as Gemini-2.5-Pro spend output tokens on thinking, so keep it generous).
        use_response_schema: ask for JSON through the five-field response schema (turn off for
            OpenAI-compatible servers without structured output; the prompt asks for JSON anyway).
        embed_images: send images as data URLs (True) or as file URIs/URLs (False).
    """

    send_all: bool = False
    max_attempts: int = 3
    temperature: float | None = 0.0
    max_tokens: int | None = None
    use_response_schema: bool = True
    embed_images: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")


@dataclass
class JudgeSummary:
    """What one judge run did."""

    questions: int = 0
    already_done: int = 0
    judged_questions: int = 0
    incomplete_questions: int = 0
    candidates: int = 0
    prescreen_failed: int = 0
    judge_calls_saved: int = 0
    judge_requests: int = 0
    retries: int = 0
    positives: int = 0
    negatives: int = 0
    unjudged: int = 0
    output: str = ""
    batches: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def groundtruth_text(answer: str, options: dict[str, str]) -> str:
    """``"B. Pneumonia"``: the letter and its option text."""
    text = options.get(answer)
    return f"{answer}. {text}" if text else answer


def judge_prompt(question: dict[str, Any], candidate_text: str) -> str:
    """The Appendix-A judge text for one candidate of a question (a ``Question`` dict)."""
    question_text = render(QUESTION_TEMPLATE, patient_info=question.get("patient_info") or "",
                           question=question["question"], options=question.get("options") or {})
    return render(JUDGE_TEMPLATE, question=question_text,
                  groundtruth=groundtruth_text(question["answer"], question.get("options") or {}),
                  answer=candidate_text)


def judge_messages(question: dict[str, Any], candidate_text: str, images: list[str],
                   embed_images: bool = True) -> list[dict[str, Any]]:
    """One user message: the question's images, then the judge text."""
    parts = [image_part(path, embed_images) for path in images]
    parts.append({"type": "text", "text": judge_prompt(question, candidate_text)})
    return [{"role": "user", "content": parts}]


def request_id(question_id: str, index: int, attempt: int) -> str:
    """``q/3`` for the first call on candidate 3, ``q/3#2`` for the second, ..."""
    return f"{question_id}/{index}" if attempt == 1 else f"{question_id}/{index}#{attempt}"


def _usage_add(total: dict[str, int], usage: dict[str, Any] | None) -> None:
    for key in ("prompt_tokens", "completion_tokens"):
        total[key] += int((usage or {}).get(key) or 0)


def _new_candidate(sample: dict[str, Any], question: dict[str, Any]) -> dict[str, Any]:
    screen = prescreen(sample.get("text") or "", question["options"], question["answer"])
    return {
        "index": int(sample["index"]),
        "text": sample.get("text") or "",
        "finish_reason": sample.get("finish_reason") or "",
        "extracted": screen.extracted or "",
        "prescreen": screen.outcome,
        "status": "unjudged",
        "reason": screen.reason,
        "verdict": empty_verdict(),
        "judge_attempts": 0,
        "judge_raw": "",
        "judge_usage": {"prompt_tokens": 0, "completion_tokens": 0},
        "judge_cost_usd": None,
    }


def _settle_prescreened(candidate: dict[str, Any]) -> None:
    """A pre-screen failure: criterion 1 is No, the rest unrated, a negative."""
    candidate["verdict"] = {**empty_verdict(), ANSWER_CORRECTNESS: NO}
    candidate["status"] = "negative"


def _apply_verdict(candidate: dict[str, Any], verdict: dict[str, str]) -> None:
    candidate["verdict"] = verdict
    candidate["status"] = classify(verdict)
    candidate["judge_raw"] = ""
    failed = failed_criteria(verdict)
    judge_reason = f"judge: No on {', '.join(failed)}" if failed else "judge: all five Yes"
    candidate["reason"] = "; ".join(r for r in (candidate["reason"], judge_reason) if r)


def _question_row(rollout: dict[str, Any], candidates: list[dict[str, Any]], backend: Any,
                  config: JudgeConfig, complete: bool) -> dict[str, Any]:
    question = rollout["question"]
    return {
        "id": rollout["id"],
        "source": question.get("source") or "",
        "system": rollout["system"],
        "prompt": rollout["prompt"],
        "images": list(rollout["images"]),
        "answer": question["answer"],
        "answer_text": question["options"].get(question["answer"], ""),
        "complete": complete,
        "judge_backend": getattr(backend, "backend", ""),
        "judge_model": getattr(backend, "model", ""),
        "send_all": config.send_all,
        "rollout_usage": {"prompt_tokens": int((rollout.get("usage") or {}).get("prompt_tokens") or 0),
                          "completion_tokens": int((rollout.get("usage") or {}).get("completion_tokens") or 0)},
        "rollout_cost_usd": rollout.get("cost_usd"),
        "candidates": candidates,
    }


def load_rollouts(path: str | Path) -> list[dict[str, Any]]:
    """The latest rollout record of each question, in file order."""
    latest: dict[str, dict[str, Any]] = {}
    for number, record in enumerate(read_jsonl(path, allow_torn_tail=True), start=1):
        if "id" not in record:
            raise ValueError(f"{path}: record {number} has no 'id'")
        latest[str(record["id"])] = record
    return list(latest.values())


def run_judge(rollouts: str | Path, output: str | Path, backend: Any,
              config: JudgeConfig | None = None) -> JudgeSummary:
    """Pre-screen and judge every candidate of every rolled-out question not yet judged.

    Args:
        rollouts: the rollout records file written by :func:`mede2_plugin.mmrp.rollout.run_rollouts`.
        output: the judged-questions file (JSONL keyed by question id).
        backend: a :class:`mede2_plugin.client.BackendConfig` for the judge.
        config: judge settings.
    """
    from mede2_plugin.client import ChatRequest, run_batch

    config = config or JudgeConfig()
    summary = JudgeSummary(output=str(output))
    results_path = results_path_for(output)
    with JsonlStore(output) as store:
        work: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        for rollout in load_rollouts(rollouts):
            if rollout.get("status") != OK:
                continue
            summary.questions += 1
            done = store.get(rollout["id"])
            if done is not None and done.get("complete"):
                summary.already_done += 1
                continue
            missing = [p for p in rollout["images"] if "://" not in p and not p.startswith("data:")
                       and not Path(p).is_file()]
            if missing:
                raise ValueError(f"{rollouts}: question {rollout['id']!r}: image not found: {missing[0]}")
            question = rollout["question"]
            candidates = [_new_candidate(sample, question) for sample in rollout["candidates"]]
            for candidate in candidates:
                summary.candidates += 1
                if candidate["prescreen"] != "pass":
                    summary.prescreen_failed += 1
                    if not config.send_all:
                        summary.judge_calls_saved += 1
                        _settle_prescreened(candidate)
            work.append((rollout, candidates))

        incomplete: set[str] = set()
        waiting = [(rollout, c) for rollout, cands in work for c in cands if c["status"] == "unjudged"]
        for attempt in range(1, config.max_attempts + 1):
            if not waiting:
                break
            requests = {}
            for rollout, candidate in waiting:
                rid = request_id(rollout["id"], candidate["index"], attempt)
                requests[rid] = ChatRequest(
                    id=rid,
                    messages=judge_messages(rollout["question"], candidate["text"], rollout["images"],
                                            config.embed_images),
                    n=1, temperature=config.temperature, max_tokens=config.max_tokens,
                    # a retry must not be answered from the response cache: a new seed is a new request
                    seed=None if attempt == 1 else attempt,
                    response_schema=VERDICT_SCHEMA if config.use_response_schema else None,
                )
            summary.judge_requests += len(requests)
            if attempt > 1:
                summary.retries += len(requests)
            batch = run_batch(list(requests.values()), output=str(results_path), config=backend, stage="judge")
            summary.batches.append(batch.to_dict())
            results = batch.rows
            still_waiting = []
            for rollout, candidate in waiting:
                rid = request_id(rollout["id"], candidate["index"], attempt)
                row = results.get(rid)
                if row is None:
                    candidate["reason"] = "not judged: no result (budget exhausted or interrupted)"
                    incomplete.add(rollout["id"])
                    continue
                candidate["judge_attempts"] = attempt
                _usage_add(candidate["judge_usage"], row.get("usage"))
                if row.get("cost_usd") is not None:
                    candidate["judge_cost_usd"] = (candidate["judge_cost_usd"] or 0.0) + float(row["cost_usd"])
                if row.get("error"):
                    candidate["reason"] = f"not judged: judge call failed: {row['error']}"
                    incomplete.add(rollout["id"])
                    continue
                samples = row.get("samples") or []
                text = samples[0].get("text") if samples else None
                try:
                    _apply_verdict(candidate, parse_verdict(text))
                except VerdictError as err:
                    candidate["judge_raw"] = text or ""
                    if attempt < config.max_attempts:
                        still_waiting.append((rollout, candidate))
                    else:
                        candidate["reason"] = (f"unjudged: malformed verdict after {attempt} attempt(s): {err}")
            waiting = still_waiting

        for rollout, candidates in work:
            complete = rollout["id"] not in incomplete
            store.append(_question_row(rollout, candidates, backend, config, complete))
            summary.judged_questions += 1
            summary.incomplete_questions += 0 if complete else 1
            for candidate in candidates:
                key = {"positive": "positives", "negative": "negatives"}.get(candidate["status"], "unjudged")
                setattr(summary, key, getattr(summary, key) + 1)
    return summary


__all__ = ["CRITERIA", "JudgeConfig", "JudgeSummary", "judge_messages", "judge_prompt", "run_judge"]
