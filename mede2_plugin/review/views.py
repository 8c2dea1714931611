"""The review app's four views as a Gradio ``Blocks``: Rewrites, Judge audit, Pairs, Run report.

Each handler calls one :class:`~mede2_plugin.review.app.ReviewApp` method and redraws its view;
element ids (``rw-*``, ``ja-*``, ``pa-*``, ``rp-*``) are what the browser tests drive.
"""

from __future__ import annotations

from typing import Any

from mede2_plugin.core.review_log import check_reviewer
from mede2_plugin.mmrp.criteria import CRITERIA
from mede2_plugin.review import render
from mede2_plugin.review.app import ALL, ReviewApp
from mede2_plugin.review.funnel import HEADERS

#: the judge's own questions (paper Appendix A), asked of the reviewer for each criterion
CRITERION_QUESTIONS = {
    "Answer_Correctness": "Is the final answer correct based on the question?",
    "Logical_Consistency": "Is the reasoning process logically coherent and step-by-step valid?",
    "Image_Analysis_Involvement": "Does the reasoning process demonstrate appropriate analysis of any visual "
                                  "information mentioned or implied in the question?",
    "No_Hallucination": "Does the reasoning process avoid introducing irrelevant or hallucinated information "
                        "not supported by the question or known facts?",
    "Reflection_Presence": "Does the reasoning show any self-checking, verification, or reflection on possible "
                           "uncertainties?",
}


def _step(ids: list[str], current: str | None, delta: int) -> str | None:
    if not ids:
        return None
    position = ids.index(current) if current in ids else 0
    return ids[(position + delta) % len(ids)]


def build_blocks(app: ReviewApp) -> Any:
    """The Gradio ``Blocks`` of the four views, wired to ``app``."""
    import warnings

    import gradio as gr

    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],  # system fonts: no Google Fonts
                              font_mono=["ui-monospace", "monospace"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Gradio 6 moves theme/css to launch()
        blocks = gr.Blocks(theme=theme, css=render.CSS, title="MedE2 review", analytics_enabled=False)
    with blocks:
        gr.Markdown(f"## MedE2 review of `{render.escape(str(app.files.scope))}`  \n"
                    f"Reviews are saved as you decide, in `{render.escape(str(app.files.review_dir))}`.")
        reviewer = gr.Textbox(value=app.settings.reviewer, label="Reviewer (your name; reviews are kept per reviewer)",
                              elem_id="reviewer", max_lines=1)
        with gr.Tabs(elem_id="views") as tabs:
            with gr.Tab("Rewrites", id="rewrites", elem_id="tab-rewrites"):
                with gr.Row():
                    rw_pick = gr.Dropdown(label="Question", choices=[], elem_id="rw-pick", scale=4)
                    rw_prev = gr.Button("◀ Previous", elem_id="rw-prev", scale=1)
                    rw_next = gr.Button("Next ▶", elem_id="rw-next", scale=1)
                    rw_open = gr.Button("Next unreviewed", elem_id="rw-next-open", scale=1)
                rw_header = gr.HTML(elem_id="rw-header")
                with gr.Row():
                    with gr.Column():
                        gr.Markdown("**Original** (struck through: what the rewrite removed)")
                        rw_original = gr.HTML(elem_id="rw-original")
                    with gr.Column():
                        gr.Markdown("**Caption-stripped rewrite** (marked: what it added)")
                        rw_rewrite = gr.HTML(elem_id="rw-rewrite")
                with gr.Row():
                    rw_gallery = gr.Gallery(label="Images", elem_id="rw-images", height=260, columns=3)
                    rw_options = gr.HTML(elem_id="rw-options")
                rw_patient = gr.Textbox(label="Patient information (edit to correct the rewrite)", lines=2,
                                        elem_id="rw-edit-patient")
                rw_question = gr.Textbox(label="Question (edit to correct the rewrite)", lines=4,
                                         elem_id="rw-edit-question")
                rw_note = gr.Textbox(label="Note (optional)", max_lines=2, elem_id="rw-note")
                with gr.Row():
                    rw_accept = gr.Button("Accept rewrite", variant="primary", elem_id="rw-accept")
                    rw_edit = gr.Button("Save my edit", elem_id="rw-save-edit")
                    rw_reject = gr.Button("Reject rewrite", variant="stop", elem_id="rw-reject")
                rw_status = gr.HTML(elem_id="rw-status")
            with gr.Tab("Judge audit", id="judge", elem_id="tab-judge"):
                ja_info = gr.HTML(elem_id="ja-info")
                with gr.Row():
                    ja_pick = gr.Dropdown(label="Candidate", choices=[], elem_id="ja-pick", scale=4)
                    ja_prev = gr.Button("◀ Previous", elem_id="ja-prev", scale=1)
                    ja_next = gr.Button("Next ▶", elem_id="ja-next", scale=1)
                    ja_open = gr.Button("Next unscored", elem_id="ja-next-open", scale=1)
                ja_header = gr.HTML(elem_id="ja-header")
                with gr.Row():
                    ja_gallery = gr.Gallery(label="Images", elem_id="ja-images", height=260, columns=3)
                    ja_question = gr.HTML(elem_id="ja-question")
                ja_candidate = gr.HTML(elem_id="ja-candidate")
                ja_radios = {name: gr.Radio(["Yes", "No"], label=f"{name}: {CRITERION_QUESTIONS[name]}",
                                            elem_id=f"ja-{name}") for name in CRITERIA}
                ja_note = gr.Textbox(label="Note (optional)", max_lines=2, elem_id="ja-note")
                ja_save = gr.Button("Save my scores", variant="primary", elem_id="ja-save")
                ja_verdict = gr.HTML(elem_id="ja-verdict")
                ja_agreement = gr.HTML(elem_id="ja-agreement-box")
                ja_plot = gr.Image(label="human − judge score differences", elem_id="ja-histogram", visible=False,
                                   interactive=False, height=300)
            with gr.Tab("Pairs", id="pairs", elem_id="tab-pairs"):
                with gr.Row():
                    pa_question = gr.Dropdown([ALL] + sorted({p.question_id for p in app.pairs}), value=ALL,
                                              label="Question", elem_id="pa-question")
                    pa_criterion = gr.Dropdown([ALL, *CRITERIA], value=ALL, label="Rejected fails criterion",
                                               elem_id="pa-criterion")
                with gr.Row():
                    pa_pick = gr.Dropdown(label="Pair", choices=[], elem_id="pa-pick", scale=4)
                    pa_prev = gr.Button("◀ Previous", elem_id="pa-prev", scale=1)
                    pa_next = gr.Button("Next ▶", elem_id="pa-next", scale=1)
                pa_header = gr.HTML(elem_id="pa-header")
                with gr.Row():
                    pa_gallery = gr.Gallery(label="Images", elem_id="pa-images", height=260, columns=3)
                    pa_prompt = gr.HTML(elem_id="pa-prompt")
                with gr.Row():
                    with gr.Column():
                        gr.Markdown("**Chosen**")
                        pa_chosen = gr.HTML(elem_id="pa-chosen")
                    with gr.Column():
                        gr.Markdown("**Rejected**")
                        pa_rejected = gr.HTML(elem_id="pa-rejected")
                pa_note = gr.Textbox(label="Why (optional)", max_lines=2, elem_id="pa-note")
                with gr.Row():
                    pa_flag = gr.Button("Flag this pair (leave it out)", variant="stop", elem_id="pa-flag")
                    pa_fine = gr.Button("Looks fine / unflag", elem_id="pa-fine")
                pa_status = gr.HTML(elem_id="pa-status")
            with gr.Tab("Run report", id="report", elem_id="tab-report"):
                gr.Markdown("### Table 1")
                gr.Markdown(app.report_markdown(), elem_id="rp-table")
                plot = app.scaling_plot()
                gr.Image(plot, label="Inference-time scaling", elem_id="rp-scaling", interactive=False,
                         visible=plot is not None, height=380)
                gr.Markdown("### Funnel: every stage, what entered, was kept and was dropped")
                gr.Dataframe(app.funnel_table(), headers=HEADERS, elem_id="rp-funnel", interactive=False, wrap=True,
                             column_widths=["20%", "14%", "8%", "8%", "8%", "42%"], max_height=900)
                with gr.Row():
                    rp_step = gr.Dropdown([r.key for r in app.funnel], value=None, label="Show the items of",
                                          elem_id="rp-step", scale=3)
                    rp_dropped = gr.Checkbox(value=True, label="dropped only", elem_id="rp-dropped", scale=1)
                gr.Markdown("Select an item of caption stripping or of a pairs set to open it in its view.")
                rp_items = gr.Dataframe(headers=["item", "outcome", "reason"], elem_id="rp-items", interactive=False,
                                        wrap=True)

        # --- handlers ------------------------------------------------------------------------------
        def fail(err: Exception) -> None:
            raise gr.Error(str(err))

        rw_outputs = [rw_pick, rw_header, rw_original, rw_rewrite, rw_gallery, rw_options, rw_patient, rw_question,
                      rw_note]

        def show_rewrite(who: str, item_id: str | None) -> list[Any]:
            view = app.rewrite_view(who, item_id)
            return [gr.update(choices=app.rewrite_choices(who), value=item_id), view["header"], view["original"],
                    view["rewrite"], view["gallery"], view["options"], view["patient"], view["question"], view["note"]]

        def decide(action: str):
            def handler(who: str, item_id: str, patient: str, question: str, note: str) -> list[Any]:
                if not item_id:
                    fail(ValueError("no question selected"))
                try:
                    following = app.decide_rewrite(who, item_id, action, patient, question, note)
                except (ValueError, KeyError) as err:
                    fail(err)
                status = (f'<div id="rw-saved" data-item="{render.escape(item_id, quote=True)}" '
                          f'data-decision="{action}">Saved: {action} of {render.escape(item_id)}.</div>')
                return [status, *show_rewrite(who, following)]
            return handler

        for button, action in ((rw_accept, "accept"), (rw_edit, "edit"), (rw_reject, "reject")):
            button.click(decide(action), [reviewer, rw_pick, rw_patient, rw_question, rw_note], [rw_status, *rw_outputs])
        rw_pick.input(show_rewrite, [reviewer, rw_pick], rw_outputs)
        rw_prev.click(lambda who, cur: show_rewrite(who, _step([i.id for i in app.rewrites], cur, -1)),
                      [reviewer, rw_pick], rw_outputs)
        rw_next.click(lambda who, cur: show_rewrite(who, _step([i.id for i in app.rewrites], cur, 1)),
                      [reviewer, rw_pick], rw_outputs)
        rw_open.click(lambda who, cur: show_rewrite(who, app.first_open_rewrite(who, cur)), [reviewer, rw_pick],
                      rw_outputs)

        radios = [ja_radios[name] for name in CRITERIA]
        ja_outputs = [ja_info, ja_pick, ja_header, ja_gallery, ja_question, ja_candidate, *radios, ja_note, ja_save,
                      ja_verdict, ja_agreement, ja_plot]

        def show_judge(who: str, item_id: str | None) -> list[Any]:
            view = app.judge_view(who, item_id)
            report, plot = app.agreement(who)
            return [app.audit_info(who), gr.update(choices=app.judge_choices(who), value=item_id), view["header"],
                    view["gallery"], view["question"], view["candidate"],
                    *[gr.update(value=view["scores"].get(name), interactive=not view["locked"]) for name in CRITERIA],
                    gr.update(value=view["note"], interactive=not view["locked"]),
                    gr.update(interactive=not view["locked"]), view["verdict"], report,
                    gr.update(value=plot, visible=plot is not None)]

        def save_scores(who: str, item_id: str, *values_and_note: Any) -> list[Any]:
            *values, note = values_and_note
            if not item_id:
                fail(ValueError("no candidate selected"))
            try:
                app.score_judge(who, item_id, dict(zip(CRITERIA, values)), note or "")
            except (ValueError, KeyError) as err:
                fail(err)
            return show_judge(who, item_id)

        ja_save.click(save_scores, [reviewer, ja_pick, *radios, ja_note], ja_outputs)
        ja_pick.input(show_judge, [reviewer, ja_pick], ja_outputs)
        ja_prev.click(lambda who, cur: show_judge(who, _step([i.id for i in app.sample], cur, -1)), [reviewer, ja_pick],
                      ja_outputs)
        ja_next.click(lambda who, cur: show_judge(who, _step([i.id for i in app.sample], cur, 1)), [reviewer, ja_pick],
                      ja_outputs)
        ja_open.click(lambda who, cur: show_judge(who, app.first_open_judge(who, cur)), [reviewer, ja_pick], ja_outputs)

        pa_outputs = [pa_pick, pa_header, pa_gallery, pa_prompt, pa_chosen, pa_rejected, pa_note]

        def show_pair(who: str, item_id: str | None, question: str, criterion: str) -> list[Any]:
            ids = app.pair_ids(question, criterion)
            if item_id not in ids:
                item_id = ids[0] if ids else None
            view = app.pair_view(who, item_id, ids)
            return [gr.update(choices=app.pair_choices(who, ids), value=item_id), view["header"], view["gallery"],
                    view["prompt"], view["chosen"], view["rejected"], view["note"]]

        def flag(flagged: bool):
            def handler(who: str, item_id: str, note: str, question: str, criterion: str) -> list[Any]:
                if not item_id:
                    fail(ValueError("no pair selected"))
                try:
                    app.flag_pair(who, item_id, flagged, note or "")
                except (ValueError, KeyError) as err:
                    fail(err)
                status = (f'<div id="pa-saved" data-item="{render.escape(item_id, quote=True)}" '
                          f'data-flagged="{str(flagged).lower()}">Saved: {"flagged" if flagged else "fine"} '
                          f'{render.escape(item_id)}.</div>')
                return [status, *show_pair(who, item_id, question, criterion)]
            return handler

        pa_inputs = [reviewer, pa_pick, pa_question, pa_criterion]
        pa_flag.click(flag(True), [reviewer, pa_pick, pa_note, pa_question, pa_criterion], [pa_status, *pa_outputs])
        pa_fine.click(flag(False), [reviewer, pa_pick, pa_note, pa_question, pa_criterion], [pa_status, *pa_outputs])
        pa_pick.input(show_pair, pa_inputs, pa_outputs)
        pa_question.input(lambda who, q, c: show_pair(who, None, q, c), [reviewer, pa_question, pa_criterion], pa_outputs)
        pa_criterion.input(lambda who, q, c: show_pair(who, None, q, c), [reviewer, pa_question, pa_criterion],
                           pa_outputs)
        pa_prev.click(lambda who, cur, q, c: show_pair(who, _step(app.pair_ids(q, c), cur, -1), q, c), pa_inputs,
                      pa_outputs)
        pa_next.click(lambda who, cur, q, c: show_pair(who, _step(app.pair_ids(q, c), cur, 1), q, c), pa_inputs,
                      pa_outputs)

        rp_step.input(app.funnel_items, [rp_step, rp_dropped], rp_items)
        rp_dropped.input(app.funnel_items, [rp_step, rp_dropped], rp_items)

        def open_item(who, key, evt):  # Gradio reads the annotation set below
            kind = app.funnel_kind(key)
            row = evt.row_value if getattr(evt, "row_value", None) else None
            item_id = str(row[0]) if row else str(evt.value)
            if kind == "rewrite" and item_id in app.rewrite_by_id:
                return [gr.Tabs(selected="rewrites"), *show_rewrite(who, item_id), *[gr.update()] * len(pa_outputs)]
            if kind == "pair" and item_id in app.pair_by_id:
                return [gr.Tabs(selected="pairs"), *[gr.update()] * len(rw_outputs), *show_pair(who, item_id, ALL, ALL)]
            return [gr.update(), *[gr.update()] * (len(rw_outputs) + len(pa_outputs))]

        open_item.__annotations__ = {"evt": gr.SelectData}  # tells Gradio to pass the selection
        rp_items.select(open_item, [reviewer, rp_step], [tabs, *rw_outputs, *pa_outputs])

        def show_all(who: str) -> list[Any]:
            try:
                who = check_reviewer(who)
            except ValueError as err:
                fail(err)
            return [*show_rewrite(who, app.first_open_rewrite(who)), *show_judge(who, app.first_open_judge(who)),
                    *show_pair(who, app.first_open_pair(who), ALL, ALL)]

        everything = [*rw_outputs, *ja_outputs, *pa_outputs]
        blocks.load(show_all, [reviewer], everything)
        reviewer.submit(show_all, [reviewer], everything)
        reviewer.blur(show_all, [reviewer], everything)
    return blocks

