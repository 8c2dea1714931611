"""The demo's simulated API roles: scripted replies served by a local fake OpenAI-compatible server.

Nothing here is a model. Roles whose ``base_url`` is ``simulated`` are sent to
:class:`mede2_plugin.testing.FakeOpenAIServer` on 127.0.0.1, which answers with
:class:`SimulatedRoles`; the reply depends on the *model name* of the request and on the question
found in the prompt (matched by its stem against the bundled banks):

==========================  ==========================================================================
model name                  reply
==========================  ==========================================================================
``simulated-baseline...``   ``\\boxed{X}``: the right letter if the script says ``baseline: right``
``simulated-strong...``     per sample: right on the first try (``strong: never``: never right)
``simulated-classifier...`` ``{"category": script category (default reasoning), "rationale"}``
``simulated-rewriter...``   ``{"patient_info", "question": script rewrite or the text unchanged, "removed"}``
``simulated-reasoner...``   R1-like teacher: the question's ``explanation`` as the reasoning,
                            ``\\boxed{X}`` in the answer (wrong letter for ``wrong_teachers``), written
                            in the script's ``teacher_formats`` form (below)
``simulated-summarizer...`` o1-like teacher: a one-line summary with ``\\boxed{X}``; asked to expand it,
                            the ``explanation`` as the full reasoning
``simulated-trace-judge...`` ``{"logical_structure": 5, "coherence": 5}`` (2/5 for ``incoherent``)
``simulated-judge...``      MMRP verdict by rules: right letter; a think block whose conclusion
                            matches the final answer; image words (image, scan, finding, ...);
                            no degenerate repetition; a self-check (wait, check, verify)
==========================  ==========================================================================

The script (``examples/demo/simulated_roles.yaml``) lists per question id what deviates from the
defaults, and in ``teacher_formats`` how each reasoner model (by name prefix) writes its reply,
as real teachers do (:data:`TEACHER_FORMATS`):

* ``reasoning_content`` (default): reasoning in ``reasoning_content``, content ``The answer is \\boxed{X}.``
  (DeepSeek's API);
* ``answer_tags``: the same with the content in ``<answer>`` tags (DeepSeek's API asked in the
  paper's format);
* ``think_answer``: ``<think>reasoning</think><answer>The answer is \\boxed{X}.</answer>`` in the
  content (the paper's own format: QwQ / Qwen3 asked with the Appendix-A system prompt);
* ``open_think``: ``reasoning</think>`` then the answer (R1 distills, whose chat template opens
  ``<think>`` in the prompt).

Every call the server receives can be logged to a JSONL file (role, model, question).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mede2_plugin.core.answers import extract_choice
from mede2_plugin.core.questions import Question

ROLE_PREFIXES = (  # longest first: "simulated-trace-judge" before "simulated-judge"
    ("simulated-trace-judge", "trace_judge"), ("simulated-judge", "judge"),
    ("simulated-baseline", "baseline_solver"), ("simulated-strong", "strong_solver"),
    ("simulated-classifier", "classifier"), ("simulated-rewriter", "rewriter"),
    ("simulated-reasoner", "teacher"), ("simulated-summarizer", "teacher"),
)
EXPANSION_PREFIX = "Expanding my summary step by step: "
IMAGE_WORDS = re.compile(r"\b(image|images|scan|film|radiograph|figure|finding|findings|shows|shown|opacity|"
                         r"lesion|appearance|bright|spot)\b", re.IGNORECASE)
REFLECTION_WORDS = re.compile(r"\b(wait|check|verify|double-check|reconsider|re-examine)\b", re.IGNORECASE)
CONCLUSION = re.compile(r"answer is\s*\(?([A-J])\b")
TEACHER_FORMATS = ("reasoning_content", "answer_tags", "think_answer", "open_think")
REPETITION = re.compile(r"\b((?:\w+\W+){0,3}?\w+)(?:\W+\1\b){2,}", re.IGNORECASE)  # a 1-4 word loop, 3 times


def role_of(model: str) -> str | None:
    """The simulated role a model name stands for (None: not a simulated model)."""
    for prefix, role in ROLE_PREFIXES:
        if model.startswith(prefix):
            return role
    return None


def _normal(text: str) -> str:
    return " ".join(text.split())


def _wrong(question: Question) -> str:
    """A wrong letter: the option after the right one (cyclic)."""
    letters = list(question.options)
    return letters[(letters.index(question.answer) + 1) % len(letters)] if question.answer in letters else letters[0]


def _prompt_text(body: dict[str, Any]) -> str:
    from mede2_plugin.testing import prompt_text

    return prompt_text(body)


def _block(text: str, tag: str) -> str:
    match = re.search(rf"<{tag}>\s*(.*?)\s*</{tag}>", text, re.DOTALL)
    return match.group(1) if match else ""


@dataclass
class QuestionScript:
    """What the simulated roles do with one question (see the module docstring)."""

    baseline: str = "wrong"
    strong: str = "right"
    category: str = "reasoning"
    rewrite: dict[str, Any] = field(default_factory=dict)
    wrong_teachers: list[str] = field(default_factory=list)
    incoherent: list[str] = field(default_factory=list)


def load_script(path: str | Path) -> tuple[dict[str, QuestionScript], dict[str, str]]:
    """Per-question scripts (``questions: {id: {...}}``) and the reasoners' reply formats
    (``teacher_formats: {model prefix: format}``) from the YAML file; errors name the entry."""
    import yaml

    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    scripts = {}
    for qid, entry in (data.get("questions") or {}).items():
        try:
            scripts[str(qid)] = QuestionScript(**(entry or {}))
        except TypeError as err:
            raise ValueError(f"{path}: question {qid!r}: {err}") from None
    formats = {str(k): str(v) for k, v in (data.get("teacher_formats") or {}).items()}
    unknown = {k: v for k, v in formats.items() if v not in TEACHER_FORMATS}
    if unknown:
        raise ValueError(f"{path}: teacher_formats {unknown}: each must be one of {TEACHER_FORMATS}")
    return scripts, formats


class SimulatedRoles:
    """``reply(body, sample_index)`` for :class:`~mede2_plugin.testing.FakeOpenAIServer`.

    Args:
        questions: the bundled questions (with ``metadata["explanation"]`` for the teachers).
        script: per-question deviations from the defaults.
        call_log: append one JSON line per received call here (None: no log).
        teacher_formats: reasoner model-name prefix -> reply format (default ``reasoning_content``).
    """

    def __init__(self, questions: list[Question], script: dict[str, QuestionScript],
                 call_log: str | Path | None = None, teacher_formats: dict[str, str] | None = None) -> None:
        self.questions = {q.id: q for q in questions}
        self.script = script
        self.teacher_formats = dict(teacher_formats or {})
        self.call_log = Path(call_log) if call_log else None
        self._lock = threading.Lock()
        self._stems: list[tuple[str, str]] = []
        for question in questions:
            self._stems.append((_normal(question.question), question.id))
            rewritten = script.get(question.id, QuestionScript()).rewrite.get("question")
            if rewritten:
                self._stems.append((_normal(rewritten), question.id))
        self._stems.sort(key=lambda item: len(item[0]), reverse=True)

    def find(self, text: str) -> Question | None:
        """The question whose stem occurs in ``text`` (the longest match)."""
        normal = _normal(text)
        for stem, qid in self._stems:
            if stem and stem in normal:
                return self.questions[qid]
        return None

    def _log(self, body: dict[str, Any], role: str | None, question: Question | None) -> None:
        if self.call_log is None:
            return
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()[:16]
        line = json.dumps({"time": round(time.time(), 3), "model": body.get("model"), "role": role,
                           "question_id": question.id if question else None, "n": body.get("n") or 1,
                           "request": digest})
        with self._lock:
            self.call_log.parent.mkdir(parents=True, exist_ok=True)
            with self.call_log.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")

    def __call__(self, body: dict[str, Any], sample: int) -> str | tuple[str, str | None]:
        model = str(body.get("model") or "")
        role = role_of(model)
        text = _prompt_text(body)
        question = None if role == "judge" else self.find(text)
        if sample == 0:
            self._log(body, role, question)
        if role == "judge":
            return self.mmrp_verdict(text)
        if role is None or question is None:
            return "The simulated server has no script for this request."
        script = self.script.get(question.id, QuestionScript())
        if role == "baseline_solver":
            letter = question.answer if script.baseline == "right" else _wrong(question)
            return f"Simulated baseline solver. The answer is \\boxed{{{letter}}}."
        if role == "strong_solver":
            right = script.strong != "never" and sample == 0
            return f"Simulated strong solver, try {sample + 1}. \\boxed{{{question.answer if right else _wrong(question)}}}"
        if role == "classifier":
            return json.dumps({"category": script.category, "rationale": "simulated classifier: scripted category"})
        if role == "rewriter":
            return json.dumps({"patient_info": script.rewrite.get("patient_info", question.patient_info),
                               "question": _normal(script.rewrite.get("question") or question.question),
                               "removed": list(script.rewrite.get("removed") or [])})
        if role == "teacher":
            return self.teacher(model, body, question, script)
        if role == "trace_judge":
            reasoning = _block(text, "Reasoning")
            teacher = "simulated-summarizer" if reasoning.startswith(EXPANSION_PREFIX.strip()) else "simulated-reasoner"
            score = 2 if any(teacher.startswith(t) or t.startswith(teacher) for t in script.incoherent) else 5
            return json.dumps({"logical_structure": score, "coherence": score,
                               "comment": "simulated trace judge: scripted rating"})
        return "The simulated server has no script for this role."

    def teacher(self, model: str, body: dict[str, Any], question: Question,
                script: QuestionScript) -> str | tuple[str, str | None]:
        """R1-like (reasoning field) or o1-like (summary, then its expansion) teacher replies."""
        wrong = any(model.startswith(t) for t in script.wrong_teachers)
        letter = _wrong(question) if wrong else question.answer
        explanation = str(question.metadata.get("explanation") or
                          f"The findings point to option {question.answer}. Wait, let me check the other options. "
                          f"So the answer is {question.answer}.")
        if wrong:
            explanation = re.sub(r"answer is [A-J]", f"answer is {letter}", explanation)
        final = f"The answer is \\boxed{{{letter}}}."
        if model.startswith("simulated-reasoner"):
            form = next((f for prefix, f in self.teacher_formats.items() if model.startswith(prefix)),
                        "reasoning_content")
            return {"reasoning_content": (final, explanation),
                    "answer_tags": (f"<answer>{final}</answer>", explanation),
                    "think_answer": f"<think>\n{explanation}\n</think>\n<answer>\n{final}\n</answer>",
                    "open_think": f"{explanation}\n</think>\n\n{final}"}[form]
        expanding = any(m.get("role") == "assistant" for m in body.get("messages", []))
        if expanding:
            return EXPANSION_PREFIX + explanation
        return f"Summary: {explanation.split('. ')[0]}. {final}"

    def mmrp_verdict(self, text: str) -> str:
        """The five MMRP criteria of a candidate, by rules (see the module docstring)."""
        question_block = _block(text, "Question")
        options = dict(re.findall(r"^([A-J])\. (.*)$", question_block, re.MULTILINE))
        truth = _block(text, "Groundtruth")[:1]
        answer = _block(text, "Answer")
        letter = extract_choice(answer, options) if options else None
        think = _block(answer, "think")
        conclusions = CONCLUSION.findall(think)
        consistent = bool(think) and (not conclusions or conclusions[-1] == letter)
        degenerate = bool(REPETITION.search(think)) or len(think) < 20
        verdict = {
            "Answer_Correctness": letter is not None and letter == truth,
            "Logical_Consistency": consistent and not degenerate,
            "Image_Analysis_Involvement": bool(IMAGE_WORDS.search(think)),
            "No_Hallucination": not degenerate,
            "Reflection_Presence": bool(REFLECTION_WORDS.search(think)),
        }
        return json.dumps({k: "Yes" if v else "No" for k, v in verdict.items()})


def stable_port(key: str) -> int:
    """A port chosen from ``key`` (the run's folder), so reruns reach the same URL: the response cache
    keys hold the server address, and a stable one lets a rerun find the earlier answers there."""
    return 20000 + int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % 30000


def start_server(questions: list[Question], script_path: str | Path, call_log: str | Path | None = None,
                 latency: float = 0.0, port_key: str | None = None):
    """Start the fake OpenAI-compatible server answering with :class:`SimulatedRoles`; return it.

    Its answers report realistic token usage (``usage="tokens"`` of the fake server).

    With ``port_key`` the server takes :func:`stable_port` when it is free (any free port otherwise).
    """
    from mede2_plugin.testing import FakeOpenAIServer

    scripts, formats = load_script(script_path)
    roles = SimulatedRoles(questions, scripts, call_log, formats)
    if port_key is not None:
        try:
            return FakeOpenAIServer(reply=roles, latency=latency, port=stable_port(port_key), usage="tokens").start()
        except OSError:
            pass
    return FakeOpenAIServer(reply=roles, latency=latency, usage="tokens").start()
