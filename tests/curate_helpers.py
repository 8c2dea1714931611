"""Shared pieces of the curate/distill tests: fixture paths, tiny images, scripted model replies.

The scripted replies answer by the question found in the prompt (its stem is matched against the
fixture bank), by the kind of prompt (solver, classifier, rewriter, teacher, expansion, judge) and
by the model name, so one fake OpenAI-compatible server plays every model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mede2_plugin.core.questions import Question
from mede2_plugin.testing import Fault, prompt_text

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "curate"


def fixture_questions(name: str = "train_bank.jsonl") -> list[Question]:
    return [Question.from_dict(json.loads(line)) for line in (FIXTURES / name).read_text().splitlines() if line.strip()]


def write_images(folder: Path, names: list[str]) -> Path:
    """Tiny PNG files (the image questions' images) in ``folder``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
        Image.new("RGB", (4, 4), (index * 40 % 255, 80, 160)).save(folder / name)
    return folder


def which_question(body: dict[str, Any], questions: list[Question]) -> Question:
    text = prompt_text(body)
    found = [q for q in questions if q.question[:60] in text]
    assert len(found) == 1, f"prompt matches {len(found)} fixture questions: {text[:200]!r}"
    return found[0]


def backend(model: str, base_url: str, **extra: Any) -> dict[str, Any]:
    return {"backend": "openai", "model": model, "base_url": base_url, "max_retries": 0,
            "progress": False, "api_key_env": "MEDE2_TEST_UNUSED_KEY", **extra}


# -- curation ---------------------------------------------------------------------------------

BASELINE = {"t1": "Scurvy is vitamin C deficiency. \\boxed{B}", "t2": "\\boxed{C}", "t3": "\\boxed{A}",
            "t4": "I am not sure.", "t6": "\\boxed{A}"}
STRONG_RIGHT_AT = {"t1": {0, 1, 2, 3}, "t2": {2}, "t3": set(), "t4": {0, 1, 2, 3}, "t6": {0}}
CLASSIFY = {"i1": '{"category": "pattern_recognition", "rationale": "naming a structure"}',
            "i2": '{"category": "reasoning", "rationale": "management from history and imaging"}',
            "i3": '```json\n{"category": "Reasoning", "rationale": "predicting the course"}\n```',
            "i4": '{"category": "knowledge_recall", "rationale": "a stain fact"}',
            "i5": "Hard to say, it could be anything.",
            "i6": '{"category": "reasoning", "rationale": "localising from leads"}'}
STRIP = {
    "i2": {"patient_info": "A 45-year-old woman has had right upper quadrant pain and fever for 1 week.",
           "question": "Her temperature is 38.2 C and leukocyte count 14,500/mm3. Which is the most appropriate "
                       "next step in management?",
           "removed": ["The CT shows a 3 cm rim-enhancing fluid collection in the right hepatic lobe."]},
    "i3": {"patient_info": "A 54-year-old man has had progressive hearing loss in the left ear for 2 years.",
           "question": "Which symptom is most likely to appear next?",
           "removed": ["The MRI shows a 2 cm enhancing lesion in the cerebellopontine angle."]},
    "i6": {"patient_info": "A 60-year-old man has crushing chest pain for 1 hour.",
           "question": "Which artery is most likely occluded in this right coronary artery territory?",
           "removed": ["The ECG shows ST elevation in leads II, III and aVF."]},
}


class CurateScript:
    """Scripted replies of the baseline, strong, classifier and rewriter models.

    The baseline's first call about ``t6`` fails with a 500 (the next run retries it).
    """

    def __init__(self, questions: list[Question]) -> None:
        self.questions = questions
        self.failed_once: set[str] = set()

    def faults(self, index: int, body: dict[str, Any]) -> Fault | None:
        if body.get("model") != "base-model":
            return None
        question = which_question(body, self.questions)
        if question.id == "t6" and "t6" not in self.failed_once:
            self.failed_once.add("t6")
            return Fault.server_error(500)
        return None

    def reply(self, body: dict[str, Any], index: int) -> str:
        question = which_question(body, self.questions)
        model = body["model"]
        if model == "base-model":
            wrong = next(letter for letter in question.options if letter != question.answer)
            return BASELINE.get(question.id, f"The answer is \\boxed{{{wrong}}}")
        if model == "strong-model":
            right_at = STRONG_RIGHT_AT.get(question.id, {0})
            wrong = next(letter for letter in question.options if letter != question.answer)
            return f"Reasoning... \\boxed{{{question.answer if index in right_at else wrong}}}"
        if model == "expert2-model":  # a second expert that is always wrong
            wrong = next(letter for letter in question.options if letter != question.answer)
            return f"\\boxed{{{wrong}}}"
        if model == "classifier-model":
            return CLASSIFY[question.id]
        if model == "rewriter-model":
            return json.dumps(STRIP[question.id])
        raise AssertionError(f"unexpected model {model}")


def curate_config(tmp_path: Path, base_url: str, images: Path) -> dict[str, Any]:
    return {
        "bank": {"path": str(FIXTURES / "train_bank.jsonl"), "format": "bank"},
        "output_dir": str(tmp_path / "curate_out"),
        "media_dir": str(images),
        "difficulty": {"baseline": {"backend": backend("base-model", base_url)},
                       "strong": [{"backend": backend("strong-model", base_url), "samples": 4, "temperature": 0.7}]},
        "classify": {"classifier": backend("classifier-model", base_url)},
        "strip": {"rewriter": backend("rewriter-model", base_url)},
        "leakage": {"benchmarks": [{"path": str(FIXTURES / "eval_medqa_test.jsonl"), "format": "medqa"},
                                   {"path": str(FIXTURES / "eval_medxpertqa_mm.jsonl"), "format": "medxpertqa"}],
                    "threshold": 0.5},
    }


# -- distillation -----------------------------------------------------------------------------

def reasoning(tag: str, sentences: int = 5) -> str:
    """A reasoning text of a few hundred characters, marked with ``tag`` for the judge script."""
    body = " ".join(f"Step {i + 1}: weigh the findings of the case against the options and check consistency."
                    for i in range(sentences))
    return f"{tag} {body}"


EXPAND_MARK = "Your answer above is only a summary"


class DistillScript:
    """Scripted replies of three teachers (reasoning_content, think tags, summary-only with
    expansion) and the judge; see ``test_distill_e2e`` for the expected reason of every trace."""

    def __init__(self, questions: list[Question]) -> None:
        self.questions = questions

    def reply(self, body: dict[str, Any], index: int):
        model = body["model"]
        if model == "judge-model":
            return self.judge(prompt_text(body))
        question = which_question(body, self.questions)
        qid, answer = question.id, question.answer
        if model == "r1-model":  # reasoning in reasoning_content
            script = {
                ("d1", 0): ("So the answer is \\boxed{B}.", reasoning("d1-r1-0")),
                ("d1", 1): ("\\boxed{A}", reasoning("d1-r1-1")),
                ("d2", 0): ("The answer " + "is long " * 80, reasoning("d2-r1-0")),  # hits max_tokens
                ("d2", 1): ("\\boxed{A}", "Short."),
                ("d3", 0): ("\\boxed{C}", reasoning("d3-r1-0", 7)),
                ("d3", 1): ("\\boxed{C}", reasoning("d3-r1-1", 5)),
                ("d4", 0): ("\\boxed{D}", reasoning("d4-r1-0") + " <answer>D</answer>"),
                ("d4", 1): ("Final: \\boxed{D}", reasoning("d4-r1-1")),
            }
            return script[(qid, index)]
        if model == "qwq-model":  # reasoning in think tags
            script = {
                ("d1", 0): f"<think>{reasoning('d1-qwq-0 [[incoherent]]')}</think>\n\\boxed{{B}}",
                ("d1", 1): f"<think>{reasoning('d1-qwq-1')}</think>\nThe answer is B.",
                ("d2", 0): f"<think>{reasoning('d2-qwq-0')} and then",
                ("d2", 1): f"<think>{reasoning('d2-qwq-1 [[unparsable]]')}</think>\n\\boxed{{A}}",
                ("d4", 0): f"{reasoning('d4-qwq-0')}</think>\n\\boxed{{D}}",  # opening tag missing
            }
            return script.get((qid, index), f"<think>{reasoning(f'{qid}-qwq-{index}')}</think>\n\\boxed{{{answer}}}")
        if model == "o1-model":  # summary only; expanded on request
            if EXPAND_MARK in prompt_text(body):
                return reasoning(f"{qid}-o1-expanded" + (" [[excellent]]" if qid == "d1" else ""), 6)
            letter = "C" if qid == "d2" else answer
            return f"Summary: the key findings point to option {letter}. \\boxed{{{letter}}}"
        raise AssertionError(f"unexpected model {model}")

    @staticmethod
    def judge(prompt: str) -> str:
        if "[[unparsable]]" in prompt:
            return "I cannot rate this."
        if "[[incoherent]]" in prompt:
            return json.dumps({"logical_structure": 3, "coherence": 2, "comment": "jumps around"})
        score = 5 if "[[excellent]]" in prompt else 4
        return json.dumps({"logical_structure": score, "coherence": score, "comment": "fine"})


def distill_config(tmp_path: Path, base_url: str) -> dict[str, Any]:
    return {
        "questions": {"path": str(FIXTURES / "distill_bank.jsonl")},
        "output_dir": str(tmp_path / "distill_out"),
        "teachers": [
            {"name": "r1", "backend": backend("r1-model", base_url), "samples": 2, "max_tokens": 60},
            {"name": "qwq", "backend": backend("qwq-model", base_url), "samples": 2, "reasoning": "auto"},
            {"name": "o1", "backend": backend("o1-model", base_url), "samples": 1, "temperature": None,
             "max_tokens": None, "extra": {"max_completion_tokens": 4000}, "reasoning": "summary",
             "expand_summary": True, "expansion_max_tokens": None},
        ],
        "filter": {"judge": backend("judge-model", base_url), "min_reasoning_chars": 100},
    }
