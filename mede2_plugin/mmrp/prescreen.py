"""Rule pre-screen: a candidate whose final answer is wrong or missing fails criterion 1.

Such a candidate is a negative without asking the judge (Answer_Correctness would be "No"
whatever the other four say), which saves one judge call per wrong rollout. The answer is read by
the package's one extractor, :func:`mede2_plugin.core.answers.extract_choice`, from the candidate's
whole output (reasoning a server sent apart is put back first, see :mod:`mede2_plugin.mmrp.rollout`):
``<think>..</think><answer>\\boxed{B}</answer>`` as M1 was trained to write it, the answer without
tags or box ("The answer is B"), ``\\boxed{\\text{B}}``, the option text; a candidate cut off inside
``<think>`` or with no single letter is ``unparsed``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mede2_plugin.core.answers import extract_choice

PASS, WRONG, UNPARSED = "pass", "wrong", "unparsed"


@dataclass(frozen=True)
class PrescreenResult:
    """What the pre-screen found in one candidate.

    Attributes:
        outcome: ``pass`` (extracted letter equals the ground truth), ``wrong`` (another letter)
            or ``unparsed`` (no option letter could be extracted).
        extracted: the extracted letter, or None.
        reason: the outcome in words (stored with a negative).
    """

    outcome: str
    extracted: str | None
    reason: str

    @property
    def passed(self) -> bool:
        return self.outcome == PASS


def prescreen(text: str, options: dict[str, str], answer: str) -> PrescreenResult:
    """Check a candidate's final answer against the ground-truth letter ``answer``."""
    letter = extract_choice(text, options)
    if letter is None:
        return PrescreenResult(UNPARSED, None, "pre-screen: no final answer could be extracted")
    if letter.upper() != answer.upper():
        return PrescreenResult(WRONG, letter, f"pre-screen: answered {letter}, ground truth {answer}")
    return PrescreenResult(PASS, letter, "")
