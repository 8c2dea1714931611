"""Small builders shared by the tests/test_mmrp_*.py files: images, questions, judged rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mede2_plugin.mmrp.criteria import CRITERIA

ALL_YES = {name: "Yes" for name in CRITERIA}


def make_image(path: Path, color: tuple[int, int, int] = (200, 30, 30), size: int = 56) -> str:
    """A small PNG with a square in it; returns its path."""
    from PIL import Image, ImageDraw

    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (size, size), (10, 10, 10))
    ImageDraw.Draw(image).rectangle([size // 4, size // 4, 3 * size // 4, 3 * size // 4], fill=color)
    image.save(path)
    return str(path)


def question_dict(qid: str, image: str, answer: str = "A", stripped: str | None = None) -> dict[str, Any]:
    metadata = {"stripped_question": stripped} if stripped else {}
    return {"id": qid, "source": "test_mm", "question": f"The radiograph of case {qid} shows a dark square. "
            "Which finding is shown?", "options": {"A": "Mass", "B": "Fracture", "C": "Normal"},
            "answer": answer, "images": [image], "patient_info": "A 60-year-old woman has a cough.",
            "modality": "X-ray", "question_type": "Reasoning", "metadata": metadata}


def write_questions(path: Path, questions: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(q) + "\n" for q in questions), encoding="utf-8")
    return path


def verdict(**no: bool) -> dict[str, str]:
    """All five Yes except the criteria given as ``Name=False``."""
    out = dict(ALL_YES)
    for name, value in no.items():
        out[name] = "Yes" if value else "No"
    return out


def candidate(index: int, status_verdict: dict[str, str] | None, text: str | None = None,
              prescreen: str = "pass") -> dict[str, Any]:
    """A judged candidate; ``None`` verdict = unjudged."""
    from mede2_plugin.mmrp.criteria import classify, empty_verdict

    v = status_verdict if status_verdict is not None else empty_verdict()
    return {"index": index, "text": text or f"<think>reasoning {index}</think><answer>\\boxed{{A}}</answer>",
            "finish_reason": "stop", "extracted": "A", "prescreen": prescreen, "status": classify(v),
            "reason": "", "verdict": v, "judge_attempts": 1 if status_verdict is not None else 0, "judge_raw": "",
            "judge_usage": {"prompt_tokens": 10 if status_verdict else 0, "completion_tokens": 5 if status_verdict else 0},
            "judge_cost_usd": 0.001 if status_verdict is not None else None}


def judged_row(qid: str, candidates: list[dict[str, Any]], images: list[str] | None = None) -> dict[str, Any]:
    return {"id": qid, "source": "test_mm", "system": "SYSTEM", "prompt": f"Question {qid}?",
            "images": images if images is not None else [f"/data/{qid}.png"], "answer": "A",
            "answer_text": "Mass", "complete": True, "judge_backend": "openai", "judge_model": "fake",
            "send_all": False, "rollout_usage": {"prompt_tokens": 100, "completion_tokens": 400},
            "rollout_cost_usd": None, "candidates": candidates}


def prescreened_negative(index: int) -> dict[str, Any]:
    from mede2_plugin.mmrp.criteria import empty_verdict

    cand = candidate(index, None, text=f"<think>wrong {index}</think><answer>\\boxed{{B}}</answer>", prescreen="wrong")
    cand.update(verdict={**empty_verdict(), "Answer_Correctness": "No"}, status="negative", judge_attempts=0,
                judge_usage={"prompt_tokens": 0, "completion_tokens": 0}, judge_cost_usd=None, extracted="B")
    return cand
