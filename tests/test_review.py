"""The review app's parts without a browser: the review logs, what curation and the pair builder
take from them, the judge-audit sample and its export to ``mede2 agreement``, escaping, the
offline page and the file guard. (The browser tests are in test_review_browser.py.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mede2_plugin.cli import main
from mede2_plugin.core.questions import Question
from mede2_plugin.core.review_decisions import flagged_pairs
from mede2_plugin.core.review_log import ReviewLog, find_review_dir
from mede2_plugin.curate.captions import run_strip
from mede2_plugin.curate.config import load_curate_config
from mede2_plugin.mmrp.criteria import CRITERIA
from mede2_plugin.mmrp.pairs import write_preference_dataset
from mede2_plugin.review.app import ReviewApp, ReviewSettings
from mede2_plugin.review.audit import audit_sample
from mede2_plugin.review.render import candidate_html, rewrite_panels, text_block
from mede2_plugin.review.run import JudgeItem, RunFiles
from mede2_plugin.review.server import OfflinePage
from mede2_plugin.testing import FakeOpenAIServer, prompt_text

PAYLOAD = '<script>alert(1)</script><img src=x onerror="alert(2)">'
YES = {name: "Yes" for name in CRITERIA}


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# --- the review logs ----------------------------------------------------------------------------

def test_log_keeps_reviewers_apart_latest_wins_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    log = ReviewLog(tmp_path / "review", "rewrites")
    log.append("q1", "alice", decision="accept")
    log.append("q1", "bob", decision="reject")
    log.append("q1", "alice", decision="edit")
    with log.path.open("ab") as handle:  # a crash in the middle of a write
        handle.write(b'{"item": "q2", "reviewer": "alice", "deci')
    log.append("q2", "alice", decision="reject")  # the next write starts on a line of its own
    assert {k: v["decision"] for k, v in log.latest().items()} == {
        ("q1", "alice"): "edit", ("q1", "bob"): "reject", ("q2", "alice"): "reject"}
    assert {k: v["decision"] for k, v in log.by_item("bob").items()} == {"q1": "reject"}
    assert log.damaged_lines == [4] and log.reviewers() == ["alice", "bob"]
    for bad in ("", "a b", "../x", "x/y", ".hidden"):
        with pytest.raises(ValueError, match="reviewer name"):
            log.append("q3", bad, decision="accept")


def test_two_processes_appending_lose_nothing(tmp_path: Path) -> None:
    code = ("import sys; from mede2_plugin.core.review_log import ReviewLog\n"
            "log = ReviewLog(sys.argv[1], 'pairs')\n"
            "for n in range(150): log.append(f'p{n}', sys.argv[2], flagged=True, note='x' * 2000)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), name]) for name in ("alice", "bob")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    log = ReviewLog(tmp_path, "pairs")
    assert len(log.records()) == 300 and not log.damaged_lines and len(log.latest()) == 300


# --- curation takes the rewrite decisions ---------------------------------------------------------

def _image_questions(folder: Path) -> list[Question]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    stems = {"q1": "A 40-year-old man has cough. The radiograph shows a right lower lobe opacity. What is the treatment?",
             "q2": "A 50-year-old woman has pain. The CT shows a 3 cm liver abscess. What is the next step?",
             "q3": "A 60-year-old man has chest pain. The ECG shows ST elevation in II, III and aVF. Which artery?",
             "q4": "A 30-year-old woman has a rash on both cheeks and joint pain for 2 months. The photograph "
                   "shows a malar rash. Which antibody test is most specific?"}
    questions = []
    for n, (qid, stem) in enumerate(stems.items()):
        Image.new("RGB", (8, 8), (40 * n, 90, 160)).save(folder / f"{qid}.png")
        questions.append(Question(id=qid, source="t", question=stem, options={"A": "alpha", "B": "beta"}, answer="A",
                                  images=[str(folder / f"{qid}.png")]))
    return questions


def _rewriter(version: str = "v1"):
    def reply(body: dict) -> str:
        text = prompt_text(body)
        stem = next(s for s in ("right lower lobe", "liver abscess", "ST elevation", "malar rash") if s in text)
        rewrites = {  # q1-q3 pass the checks; q4 deletes too much (over_deleted)
            "right lower lobe": ("A 40-year-old man has cough. Based on the image, what is the treatment?"
                                 + (" (second try)" if version == "v2" else "")),
            "liver abscess": "A 50-year-old woman has pain. Based on the image, what is the next step?",
            "ST elevation": "A 60-year-old man has chest pain. Based on the image, which artery?",
            "malar rash": "Which test?"}
        removed = re.search(r"The (?:radiograph|CT|ECG|photograph) shows [^.]*\.", text).group(0)
        return json.dumps({"patient_info": "", "question": rewrites[stem], "removed": [removed]})
    return reply


def _strip(questions: list[Question], out: Path, url: str, model: str = "rewriter", **strip: object):
    config = load_curate_config({"output_dir": str(out), "strip": {
        "rewriter": {"backend": "openai", "model": model, "base_url": url, "max_retries": 0, "progress": False,
                     "api_key_env": "MEDE2_TEST_UNUSED_KEY"}, **strip}})
    run_strip(questions, config, out / "strip")
    return {q["id"]: q for q in jsonl(out / "strip" / "kept.jsonl")}, {r["id"]: r for r in jsonl(out / "strip" / "records.jsonl")}


def test_curation_uses_the_reviewed_decisions_and_a_rerun_keeps_them(tmp_path: Path) -> None:
    questions = _image_questions(tmp_path / "media")
    out = tmp_path / "curate_out"
    with FakeOpenAIServer(reply=_rewriter("v1")) as server:
        kept, records = _strip(questions, out, server.base_url)
        assert sorted(kept) == ["q1", "q2", "q3"] and "over_deleted" in records["q4"]["failed_checks"]
        app = ReviewApp(RunFiles(out), ReviewSettings(reviewer="alice"), tmp_path / "served")
        assert [i.id for i in app.rewrites] == ["q1", "q2", "q3", "q4"]
        assert app.first_open_rewrite("alice") == "q1"
        assert app.decide_rewrite("alice", "q1", "accept") == "q2"
        app.decide_rewrite("alice", "q2", "edit", "Patient: adult.", "Which is the next step? (edited)")
        app.decide_rewrite("bob", "q3", "accept")
        app.decide_rewrite("alice", "q3", "reject", note="still describes the image")  # latest decision wins
        app.decide_rewrite("alice", "q4", "accept")  # a person overrides the failed check
        assert find_review_dir(out / "strip") == out / "review"
        calls = server.call_count
        logs = (out / "review" / "rewrites.jsonl").read_bytes()

        for _ in range(2):  # a rerun applies the same decisions, makes no call, writes no review
            kept, records = _strip(questions, out, server.base_url)
            assert server.call_count == calls and (out / "review" / "rewrites.jsonl").read_bytes() == logs
            assert sorted(kept) == ["q1", "q2", "q4"]
            assert kept["q1"]["question"] == records["q1"]["rewrite"]["question"]
            assert (kept["q2"]["patient_info"], kept["q2"]["question"]) == ("Patient: adult.", "Which is the next step? (edited)")
            assert kept["q2"]["metadata"]["caption_stripping"]["human_review"]["reviewer"] == "alice"
            assert kept["q2"]["metadata"]["caption_stripping"]["original_question"] == questions[1].question
            assert records["q3"]["reason"] == "rejected_by_reviewer" and records["q3"]["human_review"]["note"]
            assert kept["q4"]["question"] == "Which test?" and "over_deleted" in records["q4"]["failed_checks"]
            report = json.loads((out / "strip" / "report.json").read_text())
            assert report["extra"]["human_review"] == {"accept": 2, "edit": 1, "reject": 1}

        kept, records = _strip(questions, out, server.base_url, on_check_failure="keep_original")
        assert kept["q3"]["question"] == questions[2].question and records["q3"]["kept_original"]
        assert kept["q3"]["metadata"]["caption_stripping"]["rewritten"] is False

    with FakeOpenAIServer(reply=_rewriter("v2")) as server:  # another rewriter, another q1 rewrite
        kept, records = _strip(questions, out, server.base_url, model="rewriter-2")
        assert records["q1"]["human_review"]["stale"] is True  # alice accepted the earlier text
        assert kept["q1"]["question"].endswith("(second try)")  # the model's, as the checks decide
        assert kept["q2"]["question"] == "Which is the next step? (edited)"  # an edit holds its own text
        app = ReviewApp(RunFiles(out), ReviewSettings(reviewer="alice"), tmp_path / "served")
        assert app.first_open_rewrite("alice") == "q1"  # shown again for review


# --- pairs: flagged pairs are left out ------------------------------------------------------------

def _judged(path: Path, image: Path) -> Path:
    rows = []
    for q in ("q1", "q2"):
        candidates = [{"index": i, "text": f"<think>{q} reasoning {i} {PAYLOAD if i == 0 else ''}</think>"
                       f"<answer>\\boxed{{A}}</answer>", "judge_attempts": 1, "prescreen": "pass",
                       "verdict": YES if i < 2 else {**YES, "Reflection_Presence": "No"}} for i in range(4)]
        rows.append({"id": q, "prompt": f"{q}: which?\n\nA. a\nB. b", "images": [str(image)], "answer": "A",
                     "answer_text": "a", "candidates": candidates})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_pairs_can_drop_flagged_pairs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    image = tmp_path / "run" / "img.png"
    image.parent.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(image)
    judged = _judged(tmp_path / "run" / "judge" / "judged.jsonl", image)
    write_preference_dataset(judged, tmp_path / "run" / "pairs")
    app = ReviewApp(RunFiles(tmp_path / "run"), ReviewSettings(), tmp_path / "served")
    ids = [p.id for p in app.pairs]
    assert len(ids) == 4 and all(p.rejected_failed == ["Reflection_Presence"] for p in app.pairs)
    assert app.pair_ids("q1", "(all)") == [i for i in ids if i.startswith("q1/")] and len(app.pair_ids("q1", "(all)")) == 2
    assert app.pair_ids("(all)", "Reflection_Presence") == ids and app.pair_ids("(all)", "No_Hallucination") == []
    app.flag_pair("alice", ids[0], True, "same reasoning")
    app.flag_pair("bob", ids[1], True)
    app.flag_pair("bob", ids[1], False)  # bob changed his mind
    assert set(flagged_pairs(judged)) == {ids[0]}

    assert main(["pairs", "--judged", str(judged), "--out-dir", str(tmp_path / "kept"), "--drop-flagged"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["flagged_dropped"] == [ids[0]] and report["pairs"] == 3
    assert [r["id"] for r in jsonl(tmp_path / "kept" / "mede2_stage2.jsonl")] == ids[1:]
    assert main(["pairs", "--judged", str(judged), "--out-dir", str(tmp_path / "all")]) == 0
    assert len(jsonl(tmp_path / "all" / "mede2_stage2.jsonl")) == 4
    assert main(["pairs", "--judged", str(judged), "--out-dir", str(tmp_path / "x"), "--drop-flagged",
                 str(tmp_path / "nowhere")]) == 2
    assert "no such review folder" in capsys.readouterr().err

    rows = jsonl(judged)  # the flagged pair's texts change: the flag no longer applies
    rows[0]["candidates"] = [{**c, "text": c["text"] + " again"} for c in rows[0]["candidates"]]
    judged.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["pairs", "--judged", str(judged), "--out-dir", str(tmp_path / "new"), "--drop-flagged"]) == 0
    assert json.loads(capsys.readouterr().out)["flagged_dropped"] == []


# --- the judge audit ------------------------------------------------------------------------------

def _item(n: int, verdict: dict[str, str]) -> JudgeItem:
    return JudgeItem(id=f"q{n}#c0", question_id=f"q{n}", index=0, prompt="p", images=[], answer="A", answer_text="a",
                     text=f"text {n}", verdict=verdict, base=Path("."))


def test_audit_sample_is_stratified_seeded_and_grows_by_extension() -> None:
    verdicts = ([YES] * 3 + [{**YES, "Reflection_Presence": "No"}] * 20
                + [{**YES, "Answer_Correctness": "No"}] * 20)
    items = [_item(n, v) for n, v in enumerate(verdicts)]
    sample = audit_sample(items, 9, seed=7)
    assert [i.stratum for i in sample].count("positive") == 3  # the rare stratum is audited too
    assert {i.stratum for i in sample} == {"positive", "hard_negative", "negative"}
    assert [i.id for i in audit_sample(items, 9, seed=7)] == [i.id for i in sample]
    assert [i.id for i in audit_sample(items, 15, seed=7)][:9] == [i.id for i in sample]
    assert [i.id for i in audit_sample(items, 9, seed=8)] != [i.id for i in sample]
    assert len(audit_sample(items, 100)) == len(items)


def test_blind_scores_lock_and_feed_mede2_agreement(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    image = tmp_path / "run" / "img.png"
    image.parent.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(image)
    _judged(tmp_path / "run" / "judged.jsonl", image)
    app = ReviewApp(RunFiles(tmp_path / "run"), ReviewSettings(audit_size=5, agreement_min=3), tmp_path / "served")
    assert len(app.sample) == 5
    first, second, third = (i.id for i in app.sample[:3])
    view = app.judge_view("alice", first)
    assert "stays hidden" in view["verdict"] and not view["locked"]
    with pytest.raises(ValueError, match="every criterion"):
        app.score_judge("alice", first, {CRITERIA[0]: "Yes"})
    app.score_judge("alice", first, {**YES, "No_Hallucination": "No"})
    with pytest.raises(ValueError, match="cannot be changed"):
        app.score_judge("alice", first, YES)
    assert app.judge_view("alice", first)["locked"] and "<table" in app.judge_view("alice", first)["verdict"]
    assert app.judge_view("bob", first)["locked"] is False  # bob's audit is his own
    app.score_judge("alice", second, YES)
    assert "2 of the 3" in app.agreement("alice")[0]
    app.score_judge("alice", third, {name: "No" for name in CRITERIA})
    html, plot = app.agreement("alice")
    assert "Judge-human agreement of alice" in html and plot is not None

    exported = tmp_path / "run" / "review" / "judge_scores" / "alice.jsonl"
    assert main(["agreement", "--human", str(exported), "--out", str(tmp_path / "agr"), "--no-plot"]) == 0
    stats = json.loads(capsys.readouterr().out)
    judge = {i.id: sum(v == "Yes" for v in i.verdict.values()) for i in app.sample}
    assert stats["items"] == 3
    assert stats["mean_difference"] == pytest.approx(((4 - judge[first]) + (5 - judge[second]) + (0 - judge[third])) / 3)
    assert app.first_open_judge("alice") not in (first, second, third)


# --- what reaches the browser -----------------------------------------------------------------------

def test_model_text_is_escaped_everywhere() -> None:
    pieces = [text_block(PAYLOAD), candidate_html(f"<think>{PAYLOAD}</think><answer>{PAYLOAD}</answer>{PAYLOAD}"),
              *rewrite_panels({"question": PAYLOAD}, {"question": PAYLOAD + " more", "patient_info": PAYLOAD})]
    for html in pieces:
        assert "<script" not in html and "<img" not in html and "&lt;script&gt;" in html


def test_offline_page_strips_remote_assets_and_sets_a_policy() -> None:
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    page = ('<html><head><link rel="preconnect" href="https://fonts.googleapis.com" />'
            '<script src="https://cdnjs.cloudflare.com/x.js" async></script>'
            '<script type="module" src="./assets/index.js"></script></head><body>ok</body></html>')
    app = Starlette(routes=[Route("/", lambda r: HTMLResponse(page)), Route("/j", lambda r: JSONResponse({"a": 1}))])
    client = TestClient(OfflinePage(app))
    response = client.get("/")
    assert "googleapis" not in response.text and "cdnjs" not in response.text
    assert './assets/index.js' in response.text and response.headers["content-length"] == str(len(response.content))
    assert "connect-src 'self'" in response.headers["content-security-policy"]
    assert client.get("/j").json() == {"a": 1} and "content-security-policy" in client.get("/j").headers


def test_only_images_inside_the_run_and_its_data_folders_are_shown(tmp_path: Path) -> None:
    from PIL import Image

    run, data, elsewhere = tmp_path / "run", tmp_path / "data", tmp_path / "elsewhere"
    for folder in (run, data, elsewhere):
        folder.mkdir()
        Image.new("RGB", (4, 4)).save(folder / "a.png")
    (run / "link.png").symlink_to(elsewhere / "a.png")
    (run / "notes.txt").write_text("not an image")
    files = RunFiles(run, [data])
    assert files.safe_image(str(run / "a.png")) == (run / "a.png").resolve()
    assert files.safe_image(str(data / "a.png")) == (data / "a.png").resolve()
    assert files.safe_image("a.png", base=data) == (data / "a.png").resolve()
    for refused in (str(elsewhere / "a.png"), str(run / "link.png"), str(run / "notes.txt"), "/etc/passwd",
                    "../elsewhere/a.png", "https://example.org/a.png", "file:///etc/passwd"):
        assert files.safe_image(refused, base=run) is None, refused


def test_review_command_says_what_is_wrong_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("gradio", reason="gradio comes with the llamafactory extra")
    assert main(["review", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err == f"mede2 review: {tmp_path / 'missing'}: not a folder\n"
    assert main(["review", str(tmp_path), "--reviewer", "a b"]) == 2
    assert "reviewer name 'a b'" in capsys.readouterr().err
