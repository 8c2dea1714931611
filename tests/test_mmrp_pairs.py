"""Pair policies (cap, once vs all, hard negatives, seed), reports, dataset files, statistics."""

from __future__ import annotations

import json

import pytest
from mmrp_helpers import candidate, judged_row, prescreened_negative, verdict

from mede2_plugin.core.jsonl import read_jsonl, write_jsonl
from mede2_plugin.mmrp.pairs import (
    PairingPolicy,
    build_pairs,
    question_pairs,
    sharegpt_row,
    write_preference_dataset,
)
from mede2_plugin.mmrp.stats import compute_stats, format_table


def _question(qid: str = "q1") -> dict:
    """3 positives (0, 1, 2); hard negatives 3, 4 (right answer, fail another criterion);
    easy negatives 5 (judge: wrong answer) and 6 (pre-screened); 7 unjudged."""
    return judged_row(qid, [
        candidate(0, verdict()), candidate(1, verdict()), candidate(2, verdict()),
        candidate(3, verdict(Logical_Consistency=False)), candidate(4, verdict(Reflection_Presence=False)),
        candidate(5, verdict(Answer_Correctness=False, No_Hallucination=False)),
        prescreened_negative(6), candidate(7, None),
    ])


def _pairs(policy: PairingPolicy, row: dict | None = None) -> list[tuple[int, int]]:
    return [(p.chosen, p.rejected) for p in question_pairs(row or _question(), policy).pairs]


def test_classification_of_candidates():
    result = question_pairs(_question(), PairingPolicy())
    assert result.positives == [0, 1, 2]
    assert result.negatives == [3, 4, 5, 6]
    assert result.hard_negatives == [3, 4]
    assert result.unjudged == [7]


def test_once_uses_each_positive_once_and_prefers_hard_negatives():
    pairs = _pairs(PairingPolicy(positive_use="once"))
    assert sorted(c for c, _ in pairs) == [0, 1, 2]
    rejected = [r for _, r in pairs]
    assert sorted(rejected[:2]) == [3, 4]            # the two hard negatives come first
    assert rejected[2] in (5, 6)
    assert len(set(rejected)) == 3                    # no negative reused while others are left


def test_once_cycles_negatives_when_positives_outnumber_them():
    row = judged_row("q", [candidate(i, verdict()) for i in range(4)] + [candidate(9, verdict(No_Hallucination=False))])
    assert _pairs(PairingPolicy(positive_use="once"), row) == [(c, 9) for c, _ in _pairs(PairingPolicy(), row)]
    assert len(_pairs(PairingPolicy(), row)) == 4


def test_all_gives_every_combination_hard_first_and_cap_cuts():
    pairs = _pairs(PairingPolicy(positive_use="all"))
    assert sorted(pairs) == sorted((c, r) for c in (0, 1, 2) for r in (3, 4, 5, 6))
    assert {r for _, r in pairs[:6]} == {3, 4}        # 3 positives x 2 hard negatives first
    capped = _pairs(PairingPolicy(positive_use="all", pairs_per_question=2))
    assert capped == pairs[:2]
    assert len({c for c, _ in capped}) == 2 and len({r for _, r in capped}) == 2  # diagonal: distinct ends


def test_without_hard_preference_negatives_are_mixed():
    orders = {tuple(r for _, r in _pairs(PairingPolicy(positive_use="all", prefer_hard_negatives=False, seed=s)))[:6]
              for s in range(20)}
    assert any(set(order) - {3, 4} for order in orders)


def test_seed_determinism_and_independence_from_other_questions():
    policy = PairingPolicy(positive_use="all", pairs_per_question=3, seed=7)
    assert _pairs(policy) == _pairs(policy)
    assert len({tuple(_pairs(PairingPolicy(positive_use="all", pairs_per_question=3, seed=s))) for s in range(10)}) > 1
    alone, _ = build_pairs([_question("q1")], policy)
    among, _ = build_pairs([_question("q0"), _question("q1"), _question("q2")], policy)
    assert [r["id"] for r in alone] == [r["id"] for r in among if r["question_id"] == "q1"]


def test_fewer_criteria_recurate_without_new_judge_calls():
    result = question_pairs(_question(), PairingPolicy(criteria=["Answer_Correctness", "Logical_Consistency",
                                                                 "Image_Analysis_Involvement", "No_Hallucination"]))
    assert result.positives == [0, 1, 2, 4]         # 4 failed only Reflection_Presence
    assert result.negatives == [3, 5, 6]


def test_questions_without_positive_or_negative_are_reported():
    rows = [
        _question("both"),
        judged_row("no_pos", [candidate(0, verdict(Logical_Consistency=False)), prescreened_negative(1)]),
        judged_row("no_neg", [candidate(0, verdict()), candidate(1, verdict())]),
        judged_row("nothing", [candidate(0, None), candidate(1, None)]),
    ]
    records, report = build_pairs(rows, PairingPolicy())
    assert report.questions_without_positive == ["no_pos"]
    assert report.questions_without_negative == ["no_neg"]
    assert report.questions_without_judged == ["nothing"]
    assert {r["question_id"] for r in records} == {"both"}
    assert report.pairs == 3 and report.pairs_per_question == {"0": 3, "3": 1}
    assert report.pairs_with_hard_negative == 2


def test_identical_texts_and_image_tokens_are_left_out():
    same = "<think>same</think><answer>\\boxed{A}</answer>"
    row = judged_row("q", [candidate(0, verdict(), text=same), candidate(1, verdict(Reflection_Presence=False), text=same),
                           candidate(2, verdict(), text="<image> hallucinated token"),
                           candidate(3, verdict(No_Hallucination=False))])
    result = question_pairs(row, PairingPolicy(positive_use="all"))
    assert result.excluded == [2]
    assert result.identical_skipped == 1
    assert [(p.chosen, p.rejected) for p in result.pairs] == [(0, 3)]


def test_policy_validation():
    with pytest.raises(ValueError, match="positive_use"):
        PairingPolicy(positive_use="some")
    with pytest.raises(ValueError, match="pairs_per_question"):
        PairingPolicy(pairs_per_question=0)
    with pytest.raises(ValueError, match="criteria"):
        PairingPolicy(criteria=["Politeness"])
    with pytest.raises(ValueError, match="entry 'x'.*unknown key"):
        PairingPolicy.from_dict({"cap": 2}, where="entry 'x'")


def test_dataset_folder_native_sharegpt_and_dataset_info(tmp_path):
    from mmrp_helpers import make_image

    image = make_image(tmp_path / "src" / "scan.png")
    judged = tmp_path / "work" / "judged.jsonl"
    write_jsonl(judged, [judged_row("q1", _question()["candidates"], images=[image]),
                         judged_row("q2", [candidate(0, verdict())], images=[image])])
    out = tmp_path / "data"
    (out).mkdir()
    (out / "dataset_info.json").write_text(json.dumps({"other": {"file_name": "x.json"}}))
    policy = PairingPolicy(pairs_per_question=2, positive_use="all", seed=3)
    report = write_preference_dataset(judged, out, policy, images="copy")

    native = list(read_jsonl(out / "mede2_stage2.jsonl"))
    assert len(native) == report.pairs == 2
    assert native[0]["images"][0].startswith("images/") and (out / native[0]["images"][0]).is_file()
    assert native[0]["system"] == "SYSTEM" and native[0]["prompt"] == "Question q1?"
    sharegpt = list(read_jsonl(out / "mede2_stage2_sharegpt.jsonl"))
    assert sharegpt[0] == sharegpt_row(native[0])
    assert sharegpt[0]["conversations"] == [{"from": "human", "value": "<image>Question q1?"}]
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["other"] == {"file_name": "x.json"}
    assert info["mede2_stage2"] == {"file_name": "mede2_stage2.jsonl", "formatting": "mede2_pref", "ranking": True}
    assert info["mede2_stage2_sharegpt"]["columns"]["chosen"] == "chosen"
    assert info["mede2_stage2_judged"]["file_name"] == str(judged.resolve())
    assert info["mede2_stage2_judged"]["mede2_pairing"] == policy.to_dict()
    saved = json.loads((out / "mede2_stage2_pairs_report.json").read_text())
    assert saved["questions_without_negative"] == ["q2"]
    # written again with another policy: our own entries are replaced, the project's are kept
    other_policy = PairingPolicy(pairs_per_question=1, positive_use="once", seed=4)
    write_preference_dataset(judged, out, other_policy, images="copy")
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["other"] == {"file_name": "x.json"}
    assert info["mede2_stage2_judged"]["mede2_pairing"] == other_policy.to_dict() != policy.to_dict()


def test_statistics():
    rows = [_question("q1"), judged_row("q2", [candidate(0, verdict()), prescreened_negative(1),
                                               candidate(2, None)])]
    rows[1]["candidates"][2].update(judge_attempts=3, reason="unjudged: malformed verdict after 3 attempt(s): x")
    stats = compute_stats(rows)
    assert stats["candidates"] == 11
    assert stats["status"] == {"positive": 4, "negative": 5, "unjudged": 2}
    assert stats["criteria"]["Answer_Correctness"] == {"yes": 6, "no": 3, "rated": 9, "pass_rate": 0.6667}
    assert stats["criteria"]["Logical_Consistency"]["pass_rate"] == round(6 / 7, 4)
    assert stats["judge_calls"] == {"made": 6 + 3 + 1, "retries": 2, "saved_by_prescreen": 2,
                                    "malformed_final": 1, "failed": 0}
    assert stats["per_question"]["positives"]["histogram"] == {"1": 1, "3": 1}
    assert stats["per_question"]["without_negative"] == 0
    assert stats["tokens"]["rollout"] == {"prompt_tokens": 200, "completion_tokens": 800}
    assert stats["cost_usd"]["judge"] == pytest.approx(0.001 * 7)
    assert stats["cost_usd"]["rollout"] is None
    table = format_table(stats)
    assert "Answer_Correctness" in table and " 66.7%" in table and "2 saved" in table


def test_a_minimal_foreign_judged_file_with_statuses_only(tmp_path):
    path = tmp_path / "other_project.jsonl"
    path.write_text(json.dumps({"id": "x", "prompt": "Why?", "images": [], "candidates": [
        {"index": 0, "text": "good", "status": "positive"}, {"index": 1, "text": "bad", "status": "negative"},
        {"index": 2, "text": "?", "status": "unjudged"}]}) + "\n")
    from mede2_plugin.mmrp.pairs import load_judged

    records, report = build_pairs(load_judged(path), PairingPolicy(positive_use="all"))
    assert [(r["chosen"], r["rejected"], r["system"]) for r in records] == [("good", "bad", "")]
    assert report.unjudged == 1 and report.hard_negatives == 0
