"""The shared answer extractor, table-driven: every rule of mede2_plugin.core.answers has rows here."""

from __future__ import annotations

import pytest

from mede2_plugin.core.answers import (
    boxed_contents,
    extract_choice,
    has_think_answer_structure,
    is_truncated,
    last_boxed,
    split_think_answer,
)

OPTIONS = {"A": "Acetazolamide", "B": "Amitriptyline", "C": "Clopidogrel", "D": "Epinephrine",
           "E": "Verapamil"}


def think(reasoning: str, answer: str) -> str:
    return f"<think>\n{reasoning}\n</think><answer>\n{answer}\n</answer>"


CASES = [
    # --- letters in the usual forms -------------------------------------------------------------
    ("bare letter", "B", "B"),
    ("parenthesised", "(B)", "B"),
    ("bracketed", "[C]", "C"),
    ("letter with dot", "B.", "B"),
    ("letter with paren", "D)", "D"),
    ("lower-case lone letter", "b", "B"),
    ("option B", "Option B", "B"),
    ("choice (C)", "Choice (C)", "C"),
    ("answer colon", "Answer: (C)", "C"),
    ("answer is", "The answer is E.", "E"),
    ("final answer is", "My final answer is D", "D"),
    ("letter and its text", "B. Amitriptyline", "B"),
    ("paren letter and text", "(A) Acetazolamide", "A"),
    # --- \boxed{} -------------------------------------------------------------------------------
    ("boxed letter", r"So \boxed{C}", "C"),
    ("boxed letter and text", r"\boxed{B. Amitriptyline}", "B"),
    ("boxed text macro", r"\boxed{\text{B}}", "B"),
    ("boxed text macro with text", r"\boxed{\text{(B) Amitriptyline}}", "B"),
    ("boxed bold", r"\boxed{\textbf{D}}", "D"),
    ("boxed in dollars", r"$\boxed{E}$", "E"),
    ("boxed nested braces", r"\boxed{\text{\textbf{A}}}", "A"),
    ("boxed option text only", r"\boxed{Clopidogrel}", "C"),
    ("boxed option text case/space", r"\boxed{  clopidogrel }", "C"),
    ("last boxed wins", r"first \boxed{A} then corrected \boxed{C}", "C"),
    ("boxed beats prose", r"The answer is A. \boxed{D}", "D"),
    ("boxed answer phrase inside", r"\boxed{\text{Answer: B}}", "B"),
    ("unclosed boxed ignored, phrase used", "The answer is B \\boxed{C", "B"),
    # --- <think>/<answer> -----------------------------------------------------------------------
    ("paper format", think("Angle-closure glaucoma ... \\boxed{B} no wait", "\\boxed{A}"), "A"),
    ("answer block without box", think("...", "A"), "A"),
    ("answer block with option text", think("...", "Acetazolamide"), "A"),
    ("answer block sentence", think("...", "The correct answer is C."), "C"),
    ("answer block sentence with text", think("...", "The best prophylaxis here is Verapamil."), "E"),
    ("last of two answer blocks", think("x", "A") + "<answer>\\boxed{D}</answer>", "D"),
    ("answer opened, cut after box", "<think>r</think><answer>\\boxed{B}", "B"),
    ("after </think> without answer tags", "<think>r</think> The answer is \\boxed{C}.", "C"),
    ("box in reasoning ignored when answer block has letter", think("\\boxed{A}", "E"), "E"),
    ("final colon", "<think>r</think>\n\nFinal: **B**", "B"),
    ("letter is correct", "Weighing all of this, C is the correct choice here. " + "x " * 120, "C"),
    ("option is best", "Considering contraindications, option (D) is best.", "D"),
    ("later phrase wins", "At first the answer is A, but on reflection E is correct.", "E"),
    ("prose answer phrase after long text", "x " * 300 + "Therefore the answer is D.", "D"),
    # --- None: truncated, ambiguous, outside the options ----------------------------------------
    ("empty", "", None),
    ("whitespace", "   \n ", None),
    ("think never closed", "<think>\nThe patient has angle-closure glaucoma, so", None),
    ("think never closed with tentative box", "<think>\nmaybe \\boxed{A} but let me check", None),
    ("letter outside options", r"\boxed{F}", None),
    ("answer phrase outside options", "The answer is G.", None),
    ("two letters", r"\boxed{A or B}", None),
    ("letter list", r"\boxed{A, C}", None),
    ("slash letters", r"\boxed{B/C}", None),
    ("letter contradicts text", r"\boxed{B. Acetazolamide}", None),
    ("last box unparseable, no fall-back", r"\boxed{A} ... \boxed{\frac{1}{2}}", None),
    ("empty box", r"\boxed{}", None),
    ("two option texts", r"\boxed{Acetazolamide or Verapamil}", None),
    ("prose naming options only", "Acetazolamide lowers pressure; verapamil does not. " * 6, None),
    ("article is not a letter", "A 64-year-old man with glaucoma", None),
    ("answer block empty", think("reasoning", ""), None),
    ("no answer at all", "I am not sure about this one.", None),
]


@pytest.mark.parametrize("name,text,expected", CASES, ids=[c[0] for c in CASES])
def test_extract_choice(name: str, text: str, expected: str | None) -> None:
    assert extract_choice(text, OPTIONS) == expected


def test_letters_only_options_and_ten_options() -> None:
    assert extract_choice(r"\boxed{J}", list("ABCDEFGHIJ")) == "J"
    assert extract_choice(r"\boxed{K}", list("ABCDEFGHIJ")) is None
    assert extract_choice(r"\boxed{Verapamil}", list("ABCDE")) is None  # no texts to match


def test_numeric_option_texts_match_by_text() -> None:
    options = {"A": "2", "B": "4", "C": "8"}
    assert extract_choice(r"\boxed{4}", options) == "B"
    assert extract_choice(r"\boxed{16}", options) is None


def test_option_text_inside_another_is_not_ambiguous() -> None:
    options = {"A": "Gout", "B": "Pseudogout", "C": "Septic arthritis"}
    assert extract_choice(r"\boxed{Pseudogout}", options) == "B"
    assert extract_choice(r"\boxed{The diagnosis is pseudogout}", options) == "B"


def test_boxed_contents_nested_and_unclosed() -> None:
    text = r"\boxed{a{b}c} and \boxed{\text{B}} and \boxed{open"
    assert boxed_contents(text) == ["a{b}c", r"\text{B}"]
    assert last_boxed(text) == r"\text{B}"
    assert last_boxed("nothing") is None


@pytest.mark.parametrize("text,expected", [
    (think("r", "\\boxed{A}"), True),
    ("<think>r</think> <answer>A</answer>", True),
    ("<think></think><answer>A</answer>", False),          # empty reasoning
    ("<think>r</think><answer> </answer>", False),         # empty answer
    ("<answer>A</answer><think>r</think>", False),         # wrong order
    ("<think>r</think><answer>A</answer> trailing", False),
    ("<think>r</think><think>s</think><answer>A</answer>", False),
    ("<think>r", False),
    ("plain answer B", False),
])
def test_has_think_answer_structure(text: str, expected: bool) -> None:
    assert has_think_answer_structure(text) is expected


@pytest.mark.parametrize("text,finish_reason,expected", [
    (think("r", "\\boxed{A}"), "stop", False),
    (think("r", "\\boxed{A}"), "length", True),
    ("<think>never closed", None, True),
    ("<think>r</think><answer>\\boxed{A}", None, True),
    ("<think>r</think><answer>\\boxed{A</answer>", None, True),
    ("<think>r</think><answer><answer>\\boxed{A}</answer></answer>", None, False),  # nested: bad structure, not cut
    ("plain B", None, False),
])
def test_is_truncated(text: str, finish_reason: str | None, expected: bool) -> None:
    assert is_truncated(text, finish_reason) is expected


def test_split_think_answer() -> None:
    assert split_think_answer(think("why", "\\boxed{C}")) == ("why", "\\boxed{C}")
    assert split_think_answer("no tags") == (None, None)
