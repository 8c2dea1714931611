"""Statistics of a judged-questions file: criterion pass rates, positives and negatives per
question, judge calls (made, retried, saved by the pre-screen), tokens and cost."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from mede2_plugin.mmrp.criteria import ANSWER_CORRECTNESS, CRITERIA, NO, YES


def _distribution(values: list[int]) -> dict[str, Any]:
    counts = Counter(values)
    return {
        "mean": round(sum(values) / len(values), 3) if values else 0.0,
        "min": min(values) if values else 0,
        "max": max(values) if values else 0,
        "histogram": {str(k): counts[k] for k in sorted(counts)},
    }


def _add_cost(total: float | None, value: Any) -> float | None:
    if value is None:
        return total
    return (total or 0.0) + float(value)


def compute_stats(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Statistics of judged rows (see :mod:`mede2_plugin.mmrp.judge` for their layout)."""
    rated = {name: Counter() for name in CRITERIA}
    status = Counter()
    screen = Counter()
    positives, negatives = [], []
    questions = candidates = calls = retries = saved = malformed = failed_calls = incomplete = 0
    disagree = Counter()
    rollout_tokens = {"prompt_tokens": 0, "completion_tokens": 0}
    judge_tokens = {"prompt_tokens": 0, "completion_tokens": 0}
    rollout_cost: float | None = None
    judge_cost: float | None = None
    for row in rows:
        questions += 1
        incomplete += int(row.get("complete") is False)
        for key in rollout_tokens:
            rollout_tokens[key] += int((row.get("rollout_usage") or {}).get(key) or 0)
        rollout_cost = _add_cost(rollout_cost, row.get("rollout_cost_usd"))
        n_pos = n_neg = 0
        for cand in row.get("candidates") or []:
            candidates += 1
            status[cand.get("status", "unjudged")] += 1
            n_pos += cand.get("status") == "positive"
            n_neg += cand.get("status") == "negative"
            outcome = cand.get("prescreen", "")
            screen[outcome] += 1
            attempts = int(cand.get("judge_attempts") or 0)
            calls += attempts
            retries += max(0, attempts - 1)
            if outcome != "pass" and attempts == 0 and cand.get("status") == "negative":
                saved += 1
            reason = cand.get("reason") or ""
            malformed += "malformed verdict" in reason
            failed_calls += "judge call failed" in reason
            verdict = cand.get("verdict") or {}
            for name in CRITERIA:
                if verdict.get(name) in (YES, NO):
                    rated[name][verdict[name]] += 1
            if attempts and verdict.get(ANSWER_CORRECTNESS) in (YES, NO) and outcome:
                disagree[(outcome == "pass", verdict[ANSWER_CORRECTNESS] == YES)] += 1
            for key in judge_tokens:
                judge_tokens[key] += int((cand.get("judge_usage") or {}).get(key) or 0)
            judge_cost = _add_cost(judge_cost, cand.get("judge_cost_usd"))
        positives.append(n_pos)
        negatives.append(n_neg)
    both = sum(1 for p, n in zip(positives, negatives) if p and n)
    total_cost = None if rollout_cost is None and judge_cost is None else (rollout_cost or 0.0) + (judge_cost or 0.0)
    return {
        "questions": questions,
        "incomplete_questions": incomplete,
        "candidates": candidates,
        "status": {k: status[k] for k in ("positive", "negative", "unjudged")},
        "prescreen": {k: screen[k] for k in ("pass", "wrong", "unparsed")},
        "criteria": {
            name: {"yes": rated[name][YES], "no": rated[name][NO],
                   "rated": rated[name][YES] + rated[name][NO],
                   "pass_rate": round(rated[name][YES] / (rated[name][YES] + rated[name][NO]), 4)
                   if rated[name][YES] + rated[name][NO] else None}
            for name in CRITERIA
        },
        "prescreen_vs_judge": {
            "both_correct": disagree[(True, True)], "both_wrong": disagree[(False, False)],
            "rule_correct_judge_wrong": disagree[(True, False)], "rule_wrong_judge_correct": disagree[(False, True)],
        },
        "per_question": {
            "positives": _distribution(positives),
            "negatives": _distribution(negatives),
            "with_positive_and_negative": both,
            "without_positive": sum(1 for p in positives if not p),
            "without_negative": sum(1 for n in negatives if not n),
        },
        "judge_calls": {"made": calls, "retries": retries, "saved_by_prescreen": saved,
                        "malformed_final": malformed, "failed": failed_calls},
        "tokens": {"rollout": rollout_tokens, "judge": judge_tokens},
        "cost_usd": {"rollout": rollout_cost, "judge": judge_cost, "total": total_cost},
    }


def format_table(stats: dict[str, Any]) -> str:
    """A short plain-text table of the statistics."""
    def rate(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:5.1f}%"

    def money(value: float | None) -> str:
        return "unknown" if value is None else f"${value:.4f}"

    per_q = stats["per_question"]
    calls = stats["judge_calls"]
    tokens = stats["tokens"]
    cost = stats["cost_usd"]
    lines = [
        (f"questions {stats['questions']} (incomplete {stats['incomplete_questions']}), "
         f"candidates {stats['candidates']}: positive {stats['status']['positive']}, "
         f"negative {stats['status']['negative']}, unjudged {stats['status']['unjudged']}"),
        (f"pre-screen: pass {stats['prescreen']['pass']}, wrong {stats['prescreen']['wrong']}, "
         f"unparsed {stats['prescreen']['unparsed']}"),
        "",
        f"{'criterion':<28}{'pass rate':>10}{'yes':>7}{'no':>7}",
    ]
    lines += [f"{name:<28}{rate(row['pass_rate']):>10}{row['yes']:>7}{row['no']:>7}"
              for name, row in stats["criteria"].items()]
    lines += [
        "",
        (f"per question: positives mean {per_q['positives']['mean']} (max {per_q['positives']['max']}), "
         f"negatives mean {per_q['negatives']['mean']} (max {per_q['negatives']['max']}); "
         f"with both {per_q['with_positive_and_negative']}, without positive {per_q['without_positive']}, "
         f"without negative {per_q['without_negative']}"),
        (f"judge calls: {calls['made']} made, {calls['retries']} retries, {calls['saved_by_prescreen']} saved "
         f"by the pre-screen, {calls['malformed_final']} left malformed, {calls['failed']} failed"),
        (f"tokens: rollout {tokens['rollout']['prompt_tokens']} in / {tokens['rollout']['completion_tokens']} out, "
         f"judge {tokens['judge']['prompt_tokens']} in / {tokens['judge']['completion_tokens']} out"),
        (f"cost: rollout {money(cost['rollout'])}, judge {money(cost['judge'])}, "
         f"total {money(cost['total'])}"),
    ]
    return "\n".join(lines)
