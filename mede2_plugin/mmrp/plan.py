"""The calls of Stage-II data, for ``mede2 run --plan`` (nothing is sent).

Rollouts: one request per image question curation keeps (M1 on your GPUs: counted, not priced).
Judge: once the rollouts exist, exactly the candidates the rule pre-screen passes (or every
candidate with ``send_all``, the paper's protocol); before, up to ``num_candidates`` per question,
each holding a candidate estimated from ``rollout.max_tokens`` or the mean rollout so far. Both
bounds are given; retries of malformed verdicts (``max_attempts``) are not counted.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mede2_plugin.client.config import ChatRequest
from mede2_plugin.client.estimate import expected_output
from mede2_plugin.core.stage import (
    PlannedCalls,
    Projected,
    StagePlan,
    planned_questions,
)
from mede2_plugin.mmrp.config import MMRPConfig
from mede2_plugin.mmrp.criteria import VERDICT_SCHEMA
from mede2_plugin.mmrp.judge import judge_messages, load_rollouts, request_id
from mede2_plugin.mmrp.prescreen import prescreen
from mede2_plugin.mmrp.rollout import OK, build_record, results_path_for


def _rollout_requests(config: MMRPConfig, projected: Projected) -> tuple[list, list, dict]:
    """M1's requests for the certain and the possible questions, and each question's record."""
    settings = dataclasses.replace(config.rollout, embed_images=False)
    if settings.media_dir is None and config.questions:
        settings.media_dir = str(Path(config.questions).resolve().parent)
    certain, possible = planned_questions(config.questions, projected)
    r, records, found = config.rollout, {}, ([], [])
    for slot, questions in enumerate((certain, possible)):
        for question in questions:
            record, messages = build_record(question, settings)
            if messages is not None:
                records[question.id] = record
                found[slot].append(ChatRequest(id=question.id, messages=messages, n=r.num_candidates,
                                               temperature=r.temperature, top_p=r.top_p, max_tokens=r.max_tokens,
                                               seed=r.seed))
    return found[0], found[1], records


def plan_rollout(config: MMRPConfig, projected: Projected) -> StagePlan:
    certain, possible, _ = _rollout_requests(config, projected)
    return StagePlan([PlannedCalls("rollout (M1)", config.m1_backend, results_path_for(config.rollouts_path),
                                   certain, possible, "one per image question curation keeps "
                                   "(exact once curation is done), num_candidates samples each")])


def plan_judge(config: MMRPConfig, projected: Projected) -> StagePlan:
    """The judge's calls (see the module docstring)."""
    judge = config.judge
    calls = PlannedCalls("judge", config.judge_backend, results_path_for(config.judged_path))

    def request(rid: str, question: dict, text: str, images: list[str]) -> ChatRequest:
        return ChatRequest(id=rid, messages=judge_messages(question, text, images, embed_images=False), n=1,
                           temperature=judge.temperature, max_tokens=judge.max_tokens,
                           response_schema=VERDICT_SCHEMA if judge.use_response_schema else None)

    rolled = {r["id"]: r for r in load_rollouts(config.rollouts_path)} if config.rollouts_path.exists() else {}
    every = passing = unknown = 0
    for rollout in rolled.values():
        if rollout.get("status") != OK:
            continue
        question = rollout["question"]
        for sample in rollout["candidates"]:
            passed = prescreen(sample.get("text") or "", question["options"], question["answer"]).passed
            every, passing = every + 1, passing + passed
            if passed or judge.send_all:
                calls.certain.append(request(request_id(rollout["id"], sample["index"], 1), question,
                                             sample.get("text") or "", rollout["images"]))
    certain, possible, records = _rollout_requests(config, projected)
    rollout_results = results_path_for(config.rollouts_path)
    for slot, requests in enumerate((certain, possible)):
        for rollout_request in (r for r in requests if r.id not in rolled):
            tokens, basis = expected_output(rollout_results, rollout_request)
            record = records[rollout_request.id]
            for index in range(config.rollout.num_candidates):
                planned = request(request_id(record["id"], index, 1), record["question"], "", record["images"])
                (calls.certain if slot == 0 and judge.send_all else calls.possible).append(planned)
                calls.extra_tokens[planned.id] = tokens
                calls.extra_basis = f"the candidate it reads: {basis}"
                every, unknown = every + 1, unknown + 1
    calls.basis = ("every candidate (send_all, the paper's protocol)" if judge.send_all else
                   "one per candidate whose final answer passes the rule pre-screen (exact once rolled out)")
    calls.notes = [f"paper protocol (send_all, every candidate): {every} judge requests; after the rule "
                   f"pre-screen: {passing} known to pass" + (f", up to {unknown} more not rolled out yet" if unknown else ""),
                   f"malformed verdicts are asked again (up to max_attempts={judge.max_attempts}): not counted"]
    return StagePlan([calls])
