"""The one answer extractor every stage uses: model output -> option letter, or None.

:func:`extract_choice` rules, in order (the paper leaves extraction open; this is our choice):

1. **Where to look.** The last complete ``<answer>...</answer>`` block if there is one (an
   ``<answer>`` opened but cut off counts as a block running to the end). Otherwise the text after
   the last ``</think>``. A ``<think>`` that is never closed, with no ``<answer>`` after it, is a
   truncated output: ``None``, even if a ``\\boxed{}`` appears inside the unfinished reasoning.
   Text without any tags is looked at as a whole.
2. **``\\boxed{}`` first.** If that region holds a complete ``\\boxed{...}`` (nested braces are
   matched), the **last** one decides, alone: its content is parsed by rule 4 and, if that gives
   no single letter, the answer is ``None`` (no fall-back to earlier boxes or to prose). An
   unclosed ``\\boxed{`` is ignored.
3. **No box.** An ``<answer>`` block (or untagged text) of at most 200 characters is parsed by
   rule 4 as a letter form or an exact option text; failing that (or when longer), the last
   phrase of the form "answer is B", "Answer: (B)", "correct option is B", "B is correct"
   decides; failing that, a short region is searched for one option text (longer prose names
   several options in passing, so it is not searched).
4. **Parsing a candidate** (box content or block text), after unwrapping ``\\text{}``,
   ``\\textbf{}``, ``\\mathrm{}``, ``$``, ``**`` and surrounding punctuation:
   - a letter in the usual forms: ``B``, ``(B)``, ``[B]``, ``B.``, ``B)``, ``B:``,
     ``B. option text``, ``(B) option text``, ``Option B``, ``Choice (B)``, ``Answer: B``,
     ``The answer is B``, ``Final: B``; a lone lower-case letter (``b``) too. If the text after the letter
     is exactly *another* option's text, the candidate contradicts itself: ``None``;
   - several letters (``A or B``, ``A, C``, ``A/B``) are ambiguous: ``None``;
   - no letter: the option whose text equals the candidate (case and spacing ignored), else the
     one option whose text occurs in it (an option text contained in another matching option's
     text does not count separately); zero or several matches: ``None``.
5. **Only the question's letters.** A letter outside ``options`` gives ``None``, never a guess.

``None`` means "unparseable": scorers count it apart and never as a letter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
ANSWER_CLOSE = re.compile(r"</answer>", re.IGNORECASE)
THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
SHORT_REGION = 200  # longer untagged/answer text is prose: no option-text search inside it
LONG_REGION = 4000  # only the tail of a very long untagged output is searched for a phrase
BOX_START = re.compile(r"\\(?:boxed|fbox)\s*\{")
WRAPPER = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox|rm|bf)\s*\{([^{}]*)\}")
IS_CORRECT = re.compile(
    r"(?<![A-Za-z])(?i:option\s*|choice\s*)?[\(\[]?([A-Z])[\)\]]?\s+(?i:is\s+(?:the\s+)?(?:correct|right|best))\b")
PHRASE = re.compile(
    r"(?i:(?:final\s+)?answer|correct\s+(?:answer|option|choice)|best\s+(?:answer|option|choice))"
    r"\s*(?i:is|:|=|would\s+be|should\s+be)?\s*:?\s*(?i:option\s*|choice\s*)?"
    r"[\(\[]?\s*\**\s*([A-Z])\b(?![-'’])")
LETTER_FORM = re.compile(
    r"^(?i:(?:the\s+)?(?:final\s+)?(?:correct\s+)?(?:answer|option|choice|final)\s*(?:is|:|=)?\s*)?"
    r"[\(\[\{]?\s*([A-Z])\s*[\)\]\}]?"
    r"(?:\s*[.:)\-–]\s*(.*)|\s+(.*))?$", re.DOTALL)
SEVERAL_LETTERS = re.compile(
    r"^[\(\[]?[A-Z][\)\]]?(?:\s*(?:,|;|/|&|\band\b|\bor\b)\s*[\(\[]?[A-Z][\)\]]?)+$", re.IGNORECASE)


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().strip(".").strip().casefold()


def boxed_contents(text: str) -> list[str]:
    """Contents of every complete ``\\boxed{...}`` (nested braces matched), in order."""
    found = []
    for match in BOX_START.finditer(text):
        depth, start = 1, match.end()
        for pos in range(start, len(text)):
            char = text[pos]
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    found.append(text[start:pos])
                    break
    return found


def last_boxed(text: str) -> str | None:
    """The content of the last complete ``\\boxed{}``, or None."""
    contents = boxed_contents(text)
    return contents[-1] if contents else None


def split_think_answer(text: str) -> tuple[str | None, str | None]:
    """``(reasoning, answer)`` from ``<think>...</think><answer>...</answer>``; None where absent."""
    think = re.search(r"<think>(.*?)</think>", text, re.DOTALL | re.IGNORECASE)
    answers = ANSWER_BLOCK.findall(text)
    return (think.group(1).strip() if think else None, answers[-1].strip() if answers else None)


def has_think_answer_structure(text: str) -> bool:
    """Exactly one non-empty ``<think>`` block followed by one non-empty ``<answer>`` block,
    nothing but whitespace around them (the paper's Appendix-A response format)."""
    match = re.fullmatch(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", text,
                         re.DOTALL | re.IGNORECASE)
    if not match or not match.group(1).strip() or not match.group(2).strip():
        return False
    return all(len(re.findall(tag, text, re.IGNORECASE)) == 1
               for tag in ("<think>", "</think>", "<answer>", "</answer>"))


def is_truncated(text: str, finish_reason: str | None = None) -> bool:
    """Cut off: the backend says ``length``, or a ``<think>`` / ``<answer>`` / ``\\boxed{`` is left open."""
    if finish_reason == "length":
        return True
    if len(THINK_OPEN.findall(text)) > len(THINK_CLOSE.findall(text)):
        return True
    if len(ANSWER_OPEN.findall(text)) > len(ANSWER_CLOSE.findall(text)):  # nested blocks are not cut off
        return True
    return len(BOX_START.findall(text)) > len(boxed_contents(text))


def visible_text(text: str | None) -> str | None:
    """The reply without its reasoning: the text after the last ``</think>``, or the whole text
    when there is none; None when a ``<think>`` is opened and never closed (cut off while thinking)."""
    text = text or ""
    closes = list(THINK_CLOSE.finditer(text))
    if closes:
        return text[closes[-1].end():]
    if THINK_OPEN.search(text):
        return None
    return text


def answer_region(text: str) -> str | None:
    """Where the final answer should be (rule 1 of :func:`extract_choice`); None if truncated."""
    blocks = ANSWER_BLOCK.findall(text)
    if blocks:
        # an <answer> opened after the last complete block and never closed supersedes it
        tail = text[text.lower().rfind("</answer>") + len("</answer>"):]
        opened = list(ANSWER_OPEN.finditer(tail))
        return tail[opened[-1].end():] if opened else blocks[-1]
    opened = list(ANSWER_OPEN.finditer(text))
    if opened:
        return text[opened[-1].end():]
    return visible_text(text)


def _unwrap(candidate: str) -> str:
    previous = None
    while previous != candidate:
        previous = candidate
        candidate = WRAPPER.sub(r"\1", candidate)
    candidate = candidate.replace("$", "").replace("**", "").replace("\\(", "").replace("\\)", "")
    return candidate.strip().strip("`\"'*_ ").strip()


def _option_text_match(candidate: str, options: Mapping[str, str], contained: bool = True) -> str | None:
    wanted = _normalise(candidate)
    if not wanted:
        return None
    texts = {letter: _normalise(text) for letter, text in options.items() if text and _normalise(text)}
    exact = [letter for letter, text in texts.items() if text == wanted]
    if len(exact) == 1:
        return exact[0]
    if exact or not contained:
        return None
    found = [letter for letter, text in texts.items()
             if re.search(r"(?<!\w)" + re.escape(text) + r"(?!\w)", wanted)]
    found = [a for a in found if not any(a != b and texts[a] in texts[b] for b in found)]
    return found[0] if len(found) == 1 else None


def parse_candidate(candidate: str, options: Mapping[str, str], contained: bool = True) -> str | None:
    """A letter from a short answer candidate (rule 4 of :func:`extract_choice`), or None.

    ``contained=False`` turns off finding an option text inside a longer candidate (used for
    free prose, where the reasoning may name several options).
    """
    candidate = _unwrap(candidate).rstrip(".").strip()
    if not candidate:
        return None
    if len(candidate) == 1 and candidate.isalpha():
        letter = candidate.upper()
        return letter if letter in options else None
    if SEVERAL_LETTERS.fullmatch(candidate):
        letters = {c.upper() for c in re.findall(r"(?<![A-Za-z])([A-Za-z])(?![A-Za-z])", candidate)}
        return letters.pop() if len(letters) == 1 and next(iter(letters)) in options else None
    form = LETTER_FORM.fullmatch(candidate)
    if form:
        letter, rest = form.group(1), (form.group(2) or form.group(3) or "").strip()
        text_letter = _option_text_match(rest, options) if rest else None
        explicit = bool(re.match(r"^[\(\[\{]|^[A-Z]\s*[.:)\]\}\-–]|^[A-Z]$", candidate)) or \
            bool(re.match(r"(?i)^(?:the\s+)?(?:final\s+)?(?:correct\s+)?(?:answer|option|choice|final)", candidate))
        if explicit or (rest and text_letter == letter):
            if letter not in options:
                return None
            if rest and text_letter is not None and text_letter != letter \
                    and _normalise(rest) == _normalise(options[text_letter]):
                return None  # "B. <text of option A>": the candidate contradicts itself
            return letter
    return _option_text_match(candidate, options, contained)


def extract_choice(text: str | None, options: Mapping[str, str] | Iterable[str]) -> str | None:
    """The option letter a model output chose, or None when it cannot be told (see module doc).

    Args:
        text: the model's output (reasoning and answer).
        options: ``{letter: option text}`` (or just the letters, then no text matching).
    """
    if not text or not text.strip():
        return None
    if not isinstance(options, Mapping):
        options = {str(letter): "" for letter in options}
    options = {str(k).strip().upper(): str(v or "") for k, v in options.items()}
    region = answer_region(text)
    if region is None:
        return None
    boxes = boxed_contents(region)
    if boxes:
        return parse_candidate(boxes[-1], options)
    if len(region) > LONG_REGION:
        region = region[-LONG_REGION:]
    short = len(region.strip()) <= SHORT_REGION
    letter = parse_candidate(region, options, contained=False) if short else None
    if letter is not None:
        return letter
    phrases = sorted([(m.start(), m.group(1)) for m in PHRASE.finditer(region)]
                     + [(m.start(), m.group(1)) for m in IS_CORRECT.finditer(region)])
    if phrases:
        return phrases[-1][1] if phrases[-1][1] in options else None
    if short:
        return _option_text_match(_unwrap(region), options)
    return None
