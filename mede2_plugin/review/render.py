"""HTML for the review app. Every text from a model, a bank or a file is escaped here: a candidate
holding ``<script>`` or any markup shows as text, never as markup."""

from __future__ import annotations

import difflib
import re
from html import escape
from typing import Any

from mede2_plugin.mmrp.criteria import CRITERIA, NO, YES

CHECK_TITLES = {
    "patient_facts_changed": "changed patient facts",
    "answer_leaked": "leaked answer",
    "over_deleted": "over-deletion",
    "question_changed": "question changed",
    "rewrite_unparsable": "reply unreadable",
}
TOKEN = re.compile(r"\s+|[^\s]+")
THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL)
ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)

CSS = """
.mede2-text { white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 0.9em;
              border: 1px solid #ddd; border-radius: 6px; padding: 8px; max-height: 28em; overflow: auto; }
.mede2-text del, .mede2-removed { background: #ffd7d5; text-decoration: line-through; }
.mede2-text ins { background: #d3f5d0; text-decoration: none; }
.mede2-badge { display: inline-block; border-radius: 10px; padding: 1px 8px; margin: 1px 3px;
               font-size: 0.85em; background: #eee; }
.mede2-bad { background: #ffd7d5; } .mede2-good { background: #d3f5d0; } .mede2-warn { background: #fff1c2; }
.mede2-meta { color: #555; font-size: 0.9em; }
.mede2-table td, .mede2-table th { padding: 2px 10px; border-bottom: 1px solid #eee; text-align: left; }
"""


def text_block(text: Any, elem_class: str = "mede2-text") -> str:
    """A block of escaped text, line breaks kept."""
    return f'<div class="{elem_class}">{escape(str(text or ""))}</div>'


def badge(text: str, kind: str = "") -> str:
    return f'<span class="mede2-badge {kind}">{escape(text)}</span>'


def word_diff(old: str, new: str) -> tuple[str, str]:
    """The two texts as escaped HTML, words only in ``old`` in ``<del>``, only in ``new`` in ``<ins>``."""
    a, b = TOKEN.findall(old or ""), TOKEN.findall(new or "")
    left, right = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        old_part, new_part = escape("".join(a[i1:i2])), escape("".join(b[j1:j2]))
        if op == "equal":
            left.append(old_part)
            right.append(new_part)
            continue
        if old_part:
            left.append(f"<del>{old_part}</del>")
        if new_part:
            right.append(f"<ins>{new_part}</ins>")
    return "".join(left), "".join(right)


def joined(patient_info: str, question: str) -> str:
    return "\n\n".join(part for part in (patient_info or "", question or "") if part.strip())


def rewrite_panels(original: dict[str, Any], rewrite: dict[str, Any] | None) -> tuple[str, str]:
    """Original and rewrite side by side: removed words struck through on the left, added words
    marked on the right."""
    old = joined(original.get("patient_info", ""), original.get("question", ""))
    if not rewrite:
        return text_block(old), '<div class="mede2-text"><em>no usable rewrite</em></div>'
    left, right = word_diff(old, joined(rewrite.get("patient_info", ""), rewrite.get("question", "")))
    return f'<div class="mede2-text">{left}</div>', f'<div class="mede2-text">{right}</div>'


def options_html(options: dict[str, Any], answer: str | None) -> str:
    rows = []
    for letter, text in (options or {}).items():
        mark = " mede2-good" if letter == answer else ""
        rows.append(f'<div><span class="mede2-badge{mark}">{escape(str(letter))}</span> {escape(str(text))}</div>')
    return "".join(rows)


def rewrite_header(item: Any, decision: dict[str, Any] | None, position: str, stale: bool) -> str:
    """Where the item is, what the step decided, the checks' flags and the reviewer's decision."""
    record = item.record
    checks = record.get("failed_checks") or []
    flags = "".join(badge(CHECK_TITLES.get(c, c), "mede2-bad") for c in checks) or badge("all checks passed", "mede2-good")
    step = "kept" if record.get("kept") else f"dropped ({record.get('reason')})"
    if record.get("kept_original"):
        step = "kept unrewritten (check failed, keep_original)"
    removed = (item.rewrite or {}).get("removed") or []
    removed_html = "".join(f'<span class="mede2-badge mede2-removed">{escape(str(r))}</span>' for r in removed)
    if decision is None:
        yours = badge("not reviewed yet", "mede2-warn")
    else:
        yours = badge(f"your decision: {decision['decision']}", "mede2-good")
        if stale:
            yours += badge("the rewrite changed since: review again", "mede2-bad")
    return (f'<div id="rw-current" data-item="{escape(item.id, quote=True)}">'
            f'<b>{escape(item.id)}</b> <span class="mede2-meta">{escape(position)} · {escape(item.bank)} · '
            f'curation: {escape(step)}</span><br>checks: {flags} {yours}'
            + (f'<br><span class="mede2-meta">the rewriter says it removed:</span> {removed_html}' if removed else "")
            + "</div>")


def candidate_html(text: str) -> str:
    """A candidate's reasoning and answer as escaped text, the two parts apart when tagged."""
    think, answer = THINK.search(text or ""), ANSWER.search(text or "")
    if not think and not answer:
        return text_block(text)
    parts = []
    if think:
        parts.append(f'<div class="mede2-meta">think</div>{text_block(think.group(1).strip())}')
    if answer:
        parts.append(f'<div class="mede2-meta">answer</div>{text_block(answer.group(1).strip())}')
    rest = ANSWER.sub("", THINK.sub("", text)).strip()
    if rest:
        parts.append(f'<div class="mede2-meta">outside the tags</div>{text_block(rest)}')
    return "".join(parts)


def verdict_badges(verdict: dict[str, str]) -> str:
    out = []
    for name in CRITERIA:
        value = verdict.get(name, "")
        kind = "mede2-good" if value == YES else "mede2-bad" if value == NO else ""
        out.append(badge(f"{name}: {value or '-'}", kind))
    return "".join(out)


def comparison_html(human: dict[str, str], judge: dict[str, str]) -> str:
    """The reviewer's and the judge's criteria side by side (shown only once the reviewer has scored)."""
    rows = ["<tr><th>criterion</th><th>you</th><th>judge</th><th></th></tr>"]
    for name in CRITERIA:
        same = human.get(name) == judge.get(name)
        rows.append(f"<tr><td>{escape(name)}</td><td>{escape(human.get(name, ''))}</td>"
                    f"<td>{escape(judge.get(name, ''))}</td><td>{badge('agree' if same else 'differ', 'mede2-good' if same else 'mede2-bad')}</td></tr>")
    human_score = sum(v == YES for v in human.values())
    judge_score = sum(judge.get(n) == YES for n in CRITERIA)
    return (f'<div id="ja-judge-verdict"><table class="mede2-table">{"".join(rows)}</table>'
            f'<div class="mede2-meta">scores (criteria met): you {human_score}, judge {judge_score}, '
            f'difference {human_score - judge_score:+d}</div></div>')


HIDDEN_VERDICT = ('<div id="ja-judge-verdict" class="mede2-meta">The judge\'s verdict stays hidden until you '
                  'have saved your own five criteria for this candidate.</div>')


def agreement_html(stats: dict[str, Any] | None, per_criterion: dict[str, float], scored: int, needed: int,
                   reviewer: str) -> str:
    """The agreement report of one reviewer, or how many scores are still missing."""
    if stats is None:
        return (f'<div id="ja-agreement" class="mede2-meta">Agreement report: {scored} of the {needed} '
                f'scored items it needs ({escape(reviewer)}).</div>')
    rows = [("items", f"{stats['items']}"), ("mean difference (human − judge)", f"{stats['mean_difference']:+.2f}"),
            ("sigma", f"{stats['sigma']:.2f}"),
            ("within ±sigma of the mean", f"{100 * stats['share_within_sigma']:.1f} %"),
            ("within ±sigma of zero", f"{100 * stats['share_within_sigma_of_zero']:.1f} %"),
            ("exact agreement", f"{100 * stats['exact_agreement']:.1f} %"),
            ("mean absolute difference", f"{stats['mean_absolute_difference']:.2f}")]
    rows += [(f"agreement on {name}", f"{100 * share:.1f} %") for name, share in per_criterion.items()]
    body = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in rows)
    return (f'<div id="ja-agreement"><b>Judge-human agreement of {escape(reviewer)}</b> '
            f'<span class="mede2-meta">(paper: sigma 1.02, 68.9 % within ±sigma)</span>'
            f'<table class="mede2-table">{body}</table></div>')


def pair_header(item: Any, flag: dict[str, Any] | None, position: str, stale: bool) -> str:
    failed = "".join(badge(c, "mede2-bad") for c in item.rejected_failed) or badge("none recorded")
    if flag is None or stale:
        state = badge("not reviewed", "mede2-warn") + (badge("the pair changed since your flag", "mede2-bad") if stale and flag else "")
    elif flag.get("flagged"):
        state = badge("flagged by you", "mede2-bad") + (f' <span class="mede2-meta">{escape(flag.get("note") or "")}</span>')
    else:
        state = badge("reviewed: fine", "mede2-good")
    return (f'<div id="pa-current" data-item="{escape(item.id, quote=True)}"><b>{escape(item.id)}</b> '
            f'<span class="mede2-meta">{escape(position)}</span><br>rejected fails: {failed} {state}</div>')
