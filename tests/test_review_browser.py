"""``mede2 review`` in a real browser: headless Chromium driven by selenium.

1. On the demo's output: accept one rewrite, edit one, reject one, score three judge items blind,
   flag one pair; then kill the server (SIGKILL) and check the review files, the agreement report,
   that a reopened page continues where the reviewer stopped (and another reviewer starts fresh),
   and the effect on the next curation strip step and ``mede2 pairs --drop-flagged``.
2. A folder whose model texts hold ``<script>`` and markup: every view shows them as text, the
   page fetches nothing from another host, and no path from the browser reaches a file.

Screenshots of each view go to the test's output folder (and to ``$MEDE2_REVIEW_SCREENS`` when
set). The demo run is built by ``mede2 demo`` (a few minutes); ``$MEDE2_REVIEW_DEMO`` names a
finished demo output to copy instead, to save the time while developing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import free_port, wait_for_http

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1800"]
CRITERIA = ["Answer_Correctness", "Logical_Consistency", "Image_Analysis_Involvement", "No_Hallucination",
            "Reflection_Presence"]
# the bottom of the lowest element: Gradio lays the page out in an inner scrolling container
PAGE_HEIGHT = ("return Math.ceil(Math.max(...Array.from(document.querySelectorAll('body *'), "
               "e => e.getBoundingClientRect().bottom + window.scrollY)))")
PAYLOAD = ('<script>window.__mede2_xss = 1</script><img src="x" onerror="window.__mede2_xss = 2">'
           '<b id="mede2-injected">bold</b>')


def _missing_browser() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (it is in the dev extra)"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(path).exists():
            return f"{path} not found: install Debian's {package} (.ci/run does as root)"
    try:
        import gradio  # noqa: F401
    except ImportError:
        return "gradio is not installed (it comes with the llamafactory extra)"
    return None


pytestmark = pytest.mark.skipif(_missing_browser() is not None, reason=str(_missing_browser()))


# --- helpers ----------------------------------------------------------------------------------

@contextmanager
def review_server(folder: Path, log: Path, *extra: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """``mede2 review FOLDER`` in a subprocess on a free port (its private folder under the log's
    folder); stopped on exit (SIGTERM, as Ctrl-C)."""
    port = free_port()
    env = {**os.environ, "TMPDIR": str(log.parent)}
    process = subprocess.Popen([sys.executable, "-m", "mede2_plugin.cli", "review", str(folder), "--port", str(port),
                                *extra], stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", process, log, timeout_s=120)
        yield f"http://127.0.0.1:{port}/", process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)


@contextmanager
def chromium() -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS + [f"--user-data-dir={tempfile.mkdtemp(prefix='mede2-chromium-')}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, predicate, timeout: float = 30.0):
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    # Gradio re-renders a component on update: an element found a moment ago may be gone
    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(predicate)


def css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def present(driver, selector: str) -> bool:
    from selenium.webdriver.common.by import By

    return bool(driver.find_elements(By.CSS_SELECTOR, selector))


def current(driver, elem_id: str) -> str:
    """The ``data-item`` of a view's header (the item it shows), '' while loading."""
    return driver.execute_script(f"const e = document.getElementById('{elem_id}'); return e ? e.dataset.item || '' : '';")


def open_tab(driver, title: str) -> None:
    from selenium.webdriver.common.by import By

    [button] = [b for b in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]") if b.text.strip() == title]
    button.click()
    wait(driver, lambda d: button.get_attribute("aria-selected") == "true")


def type_into(driver, selector: str, text: str, enter: bool = False) -> None:
    from selenium.webdriver.common.keys import Keys

    box = css(driver, selector)
    box.click()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(text)
    if enter:
        box.send_keys(Keys.ENTER)


def load(driver, url: str) -> None:
    driver.get(url)
    wait(driver, lambda d: current(d, "rw-current") or present(d, "#rw-current"), timeout=60)


def external_requests(driver) -> list[str]:
    """URLs the page asked for that are not on the app's own host."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if url.startswith(("http:", "https:", "ws:", "wss:")) and not url.startswith(("http://127.0.0.1", "ws://127.0.0.1")):
                urls.append(url)
    return urls


def screenshot(driver, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    size = driver.get_window_size()
    for _ in range(5):  # the whole view in one picture, once images have taken their place
        missing = driver.execute_script(PAGE_HEIGHT) + 20 - driver.execute_script("return window.innerHeight")
        if missing <= 0:
            break
        driver.set_window_size(size["width"], driver.get_window_size()["height"] + missing)
        time.sleep(0.5)
    driver.save_screenshot(str(path))
    driver.set_window_size(size["width"], size["height"])
    extra = os.environ.get("MEDE2_REVIEW_SCREENS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(extra) / path.name)
    return path


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def mede2(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mede2_plugin.cli", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


# --- the demo run -----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("review_demo") / "demo"
    reuse = os.environ.get("MEDE2_REVIEW_DEMO")
    if reuse:
        shutil.copytree(reuse, out, ignore=shutil.ignore_patterns("review", "superseded"))
    else:
        done = mede2("demo", "--out", str(out), timeout=1800)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


STRIP_OVERRIDES = ["--set", "strip.rewriter.backend=openai", "--set", "strip.rewriter.model=simulated-rewriter",
                   # every rewrite is stored already: the rerun makes no call (this address refuses one)
                   "--set", "strip.rewriter.base_url=http://127.0.0.1:9/v1"]


@pytest.mark.slow
def test_scripted_review_of_the_demo(demo_run: Path, tmp_path: Path) -> None:
    run = demo_run
    screens = tmp_path / "screens"
    bank = run / "curate" / "medxpertqa_mm_demo"
    records_before = {r["id"]: r for r in jsonl(bank / "strip" / "records.jsonl")}
    judged = {r["id"]: r for r in jsonl(run / "judge" / "judged.jsonl")}
    edited_text = "A 72-year-old man suddenly cannot speak; which treatment comes first? (edited by alice)"

    with review_server(run, tmp_path / "server.log", "--reviewer", "alice") as (url, server), chromium() as driver:
        load(driver, url)
        wait(driver, lambda d: current(d, "rw-current") and present(d, "#rw-images img"))
        screenshot(driver, screens, "rewrites")
        # -- Rewrites: accept, edit, reject (each saved, then the next open item shows)
        reviewed = []
        for action in ("accept", "edit", "reject"):
            item = current(driver, "rw-current")
            assert item in records_before
            if action == "edit":
                type_into(driver, "#rw-edit-question textarea", edited_text)
            css(driver, {"accept": "#rw-accept", "edit": "#rw-save-edit", "reject": "#rw-reject"}[action]).click()
            saved = f'#rw-saved[data-item="{item}"][data-decision="{action}"]'
            wait(driver, lambda d, saved=saved: present(d, saved))
            wait(driver, lambda d, item=item: current(d, "rw-current") not in ("", item))
            reviewed.append((item, action))

        # -- Judge audit: three candidates scored blind
        open_tab(driver, "Judge audit")
        scored = {}
        for n in range(3):
            wait(driver, lambda d: current(d, "ja-current") and current(d, "ja-current") not in scored)
            item = current(driver, "ja-current")
            assert not present(driver, "#ja-verdict table"), "the judge's verdict shows before the reviewer scored"
            assert "stays hidden" in css(driver, "#ja-verdict").text
            question_id, index = item.rsplit("#c", 1)
            verdict = next(c for c in judged[question_id]["candidates"] if c["index"] == int(index))["verdict"]
            for name in CRITERIA:
                assert verdict[name] not in css(driver, "#ja-header").text.replace(name, "")
            mine = {name: ("No" if (k + n) % 3 == 0 else "Yes") for k, name in enumerate(CRITERIA)}
            for name, value in mine.items():
                css(driver, f'#ja-{name} label[data-testid="{value}-radio-label"]').click()
            css(driver, "#ja-save").click()
            wait(driver, lambda d: present(d, "#ja-verdict table"))
            shown = css(driver, "#ja-verdict").text
            for name in CRITERIA:
                assert f"{name} {mine[name]} {verdict[name]}" in shown
            assert not css(driver, f"#ja-{CRITERIA[0]} input").is_enabled(), "a blind score must lock once saved"
            scored[item] = (mine, verdict)
            if n < 2:
                css(driver, "#ja-next-open").click()
        wait(driver, lambda d: "Judge-human agreement of alice" in css(d, "#ja-agreement").text
             and present(d, "#ja-histogram img"))
        screenshot(driver, screens, "judge_audit")

        # -- Pairs: flag one
        open_tab(driver, "Pairs")
        wait(driver, lambda d: current(d, "pa-current") and present(d, "#pa-images img"))
        flagged = current(driver, "pa-current")
        type_into(driver, "#pa-note textarea", "both reason the same way")
        css(driver, "#pa-flag").click()
        wait(driver, lambda d: present(d, f'#pa-saved[data-item="{flagged}"][data-flagged="true"]'))
        screenshot(driver, screens, "pairs")

        # -- Run report: Table 1, the scaling plot, the funnel with its items
        open_tab(driver, "Run report")
        wait(driver, lambda d: "M2" in css(d, "#rp-table").text and present(d, "#rp-scaling img"))
        assert "strip" in css(driver, "#rp-funnel").text and "judge (candidates)" in css(driver, "#rp-funnel").text
        screenshot(driver, screens, "run_report")
        # the funnel links to the items: the strip step's items, one opened in the Rewrites view
        css(driver, "#rp-step input").click()
        wait(driver, lambda d: [o for o in d.find_elements("css selector", "ul.options li")
                                if o.text.strip() == "curate/medxpertqa_mm_demo / strip"])[0].click()
        css(driver, "#rp-dropped input").click()  # kept ones too
        wait(driver, lambda d: reviewed[2][0] in css(d, "#rp-items").text)
        [cell] = [c for c in driver.find_elements("css selector", "#rp-items td") if c.text.strip() == reviewed[2][0]]
        cell.click()
        wait(driver, lambda d: current(d, "rw-current") == reviewed[2][0])
        assert "your decision: reject" in css(driver, "#rw-header").text
        assert external_requests(driver) == []
        server.send_signal(signal.SIGKILL)  # a killed server loses nothing: every decision is on disk already
        server.wait(timeout=30)

    review = run / "review"
    rows = jsonl(review / "rewrites.jsonl")
    assert [(r["item"], r["decision"], r["reviewer"]) for r in rows] == [(i, a, "alice") for i, a in reviewed]
    assert rows[1]["edited"]["question"] == edited_text
    audit = jsonl(review / "judge_audit.jsonl")
    assert {r["item"]: r["scores"] for r in audit} == {item: mine for item, (mine, _) in scored.items()}
    assert [(r["item"], r["flagged"], r["note"]) for r in jsonl(review / "pairs.jsonl")] == [
        (flagged, True, "both reason the same way")]

    # the exported scores feed `mede2 agreement` as they are
    done = mede2("agreement", "--human", str(review / "judge_scores" / "alice.jsonl"), "--out", str(tmp_path / "agr"))
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    differences = [sum(v == "Yes" for v in mine.values()) - sum(v == "Yes" for v in verdict.values())
                   for mine, verdict in scored.values()]
    assert stats["items"] == 3 and stats["mean_difference"] == pytest.approx(sum(differences) / 3)
    (tmp_path / "agreement_report.json").write_text(json.dumps(stats, indent=2))

    # reopened: alice continues where she stopped; bob's reviews are his own
    with review_server(run, tmp_path / "server2.log", "--reviewer", "alice") as (url, _), chromium() as driver:
        load(driver, url)
        wait(driver, lambda d: current(d, "rw-current"))
        order = [i for i in records_before if records_before[i].get("asked")]
        assert current(driver, "rw-current") == order[3]
        open_tab(driver, "Judge audit")
        wait(driver, lambda d: current(d, "ja-current"))
        assert current(driver, "ja-current") not in scored
        open_tab(driver, "Rewrites")
        type_into(driver, "#reviewer input", "bob", enter=True)
        wait(driver, lambda d: current(d, "rw-current") == order[0])
        assert "not reviewed yet" in css(driver, "#rw-header").text

    # the next curation uses the decisions, and a rerun does not overwrite them
    logs_before = {p.name: p.read_bytes() for p in review.glob("*.jsonl")}
    for _ in range(2):
        done = mede2("curate", "strip", "-o", str(bank), *STRIP_OVERRIDES)
        assert done.returncode == 0, done.stderr[-2000:]
        assert {p.name: p.read_bytes() for p in review.glob("*.jsonl")} == logs_before
        kept = {q["id"]: q for q in jsonl(bank / "strip" / "kept.jsonl")}
        records = {r["id"]: r for r in jsonl(bank / "strip" / "records.jsonl")}
        (accepted, _), (edited, _), (rejected, _) = reviewed
        assert kept[accepted]["question"] == records_before[accepted]["rewrite"]["question"]
        assert kept[accepted]["metadata"]["caption_stripping"]["human_review"]["decision"] == "accept"
        assert kept[edited]["question"] == edited_text
        assert rejected not in kept and records[rejected]["reason"] == "rejected_by_reviewer"
        report = json.loads((bank / "strip" / "report.json").read_text())
        assert report["extra"]["human_review"] == {"accept": 1, "edit": 1, "reject": 1}
        assert report["calls"][0]["calls"] == 0

    # `mede2 pairs --drop-flagged` leaves the flagged pair out; without it, the pair stays
    judged_file = str(run / "judge" / "judged.jsonl")
    plain = mede2("pairs", "--judged", judged_file, "--out-dir", str(tmp_path / "pairs_all"), "--pairs-per-question", "2")
    dropped = mede2("pairs", "--judged", judged_file, "--out-dir", str(tmp_path / "pairs_reviewed"),
                    "--pairs-per-question", "2", "--drop-flagged")
    assert plain.returncode == 0 and dropped.returncode == 0, plain.stderr + dropped.stderr
    all_ids = [r["id"] for r in jsonl(tmp_path / "pairs_all" / "mede2_stage2.jsonl")]
    kept_ids = [r["id"] for r in jsonl(tmp_path / "pairs_reviewed" / "mede2_stage2.jsonl")]
    assert flagged in all_ids and kept_ids == [i for i in all_ids if i != flagged]
    assert json.loads(dropped.stdout)["flagged_dropped"] == [flagged]


# --- escaping, offline, files ---------------------------------------------------------------------

def _xss_folder(root: Path) -> tuple[Path, Path]:
    """A stage-output folder (no run manifest) whose texts carry ``PAYLOAD``: a strip step, a judged
    file and its pairs; one image inside the folder, one outside it."""
    from PIL import Image

    from mede2_plugin.mmrp.pairs import write_preference_dataset

    folder = root / "xss"
    (folder / "img").mkdir(parents=True)
    Image.new("RGB", (32, 32), (200, 40, 40)).save(folder / "img" / "inside.png")
    outside = root / "elsewhere" / "outside.png"
    outside.parent.mkdir()
    Image.new("RGB", (32, 32), (40, 40, 200)).save(outside)
    images = [str(folder / "img" / "inside.png"), str(outside)]
    question = {"id": "q1", "source": "demo", "question": f"Which finding? {PAYLOAD}", "options": {"A": "one", "B": "two"},
                "answer": "A", "images": images, "patient_info": "", "modality": None, "question_type": None,
                "metadata": {}}
    step = folder / "curate" / "strip"
    step.mkdir(parents=True)
    rewrite = {"patient_info": "", "question": f"Based on the image, which finding? {PAYLOAD}", "removed": [PAYLOAD]}
    (step / "records.jsonl").write_text(json.dumps({
        "id": "q1", "has_images": True, "asked": True, "original": {"patient_info": "", "question": question["question"]},
        "rewrite": rewrite, "failed_checks": ["answer_leaked"], "raw_reply": json.dumps(rewrite), "changed": True,
        "kept": False, "reason": "answer_leaked"}) + "\n")
    (step / "report.json").write_text(json.dumps({"step": "strip", "input": 1, "kept": 0, "dropped": {"answer_leaked": 1}}))
    (step.parent / "load").mkdir()
    (step.parent / "load" / "kept.jsonl").write_text(json.dumps(question) + "\n")
    yes = {name: "Yes" for name in CRITERIA}
    row = {"id": "q1", "prompt": f"Which finding? {PAYLOAD}\n\nA. one\nB. two", "images": images, "answer": "A",
           "answer_text": "one", "system": "", "complete": True, "candidates": [
               {"index": 0, "text": f"<think>I look. {PAYLOAD}</think><answer>\\boxed{{A}}</answer>", "verdict": yes,
                "status": "positive", "judge_attempts": 1, "prescreen": "pass"},
               {"index": 1, "text": f"<think>No look. {PAYLOAD} x</think><answer>\\boxed{{A}}</answer>",
                "verdict": {**yes, "Reflection_Presence": "No"}, "status": "negative", "judge_attempts": 1,
                "prescreen": "pass"}]}
    (folder / "judge").mkdir()
    (folder / "judge" / "judged.jsonl").write_text(json.dumps(row) + "\n")
    write_preference_dataset(folder / "judge" / "judged.jsonl", folder / "pairs")
    return folder, outside


def _no_injection(driver) -> None:
    assert driver.execute_script("return window.__mede2_xss === undefined"), "injected script ran"
    assert not present(driver, "#mede2-injected"), "injected markup became an element"


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_model_text_shows_as_text_and_nothing_else_is_served(tmp_path: Path) -> None:
    folder, outside = _xss_folder(tmp_path)
    with review_server(folder, tmp_path / "server.log", "--reviewer", "carol") as (url, _), chromium() as driver:
        with urllib.request.urlopen(url, timeout=10) as response:
            page = response.read().decode()
            policy = response.headers["Content-Security-Policy"]
        assert "cdnjs" not in page and "fonts.googleapis" not in page
        assert "default-src 'self'" in policy and "connect-src 'self'" in policy
        for path in ("/etc/passwd", str(folder / "judge" / "judged.jsonl"), str(outside),
                     str(folder / "img" / "inside.png")):  # not even the run's own files: only the app's copies
            assert _status(f"{url}gradio_api/file={path}") == 403, path

        load(driver, url)
        wait(driver, lambda d: current(d, "rw-current") == "q1")
        wait(driver, lambda d: "<script>window.__mede2_xss = 1</script>" in css(d, "#rw-rewrite").text)
        assert "<b id=\"mede2-injected\">bold</b>" in css(driver, "#rw-original").text
        assert "<img src=\"x\"" in css(driver, "#rw-edit-question textarea").get_attribute("value")
        assert "leaked answer" in css(driver, "#rw-header").text
        wait(driver, lambda d: len(d.find_elements("css selector", "#rw-images img")) == 1)
        assert "1 image(s) not shown" in css(driver, "#rw-header").text and "outside.png" in css(driver, "#rw-header").text
        _no_injection(driver)
        screenshot(driver, tmp_path / "screens", "xss_rewrites")

        open_tab(driver, "Judge audit")
        wait(driver, lambda d: current(d, "ja-current").startswith("q1#c"))
        assert "<script>window.__mede2_xss = 1</script>" in css(driver, "#ja-candidate").text
        assert "<script>window.__mede2_xss = 1</script>" in css(driver, "#ja-question").text
        _no_injection(driver)

        open_tab(driver, "Pairs")
        wait(driver, lambda d: current(d, "pa-current") == "q1/c0-r1" and present(d, "#pa-images img"))
        for side in ("#pa-chosen", "#pa-rejected"):
            assert "<script>window.__mede2_xss = 1</script>" in css(driver, side).text
        assert "Reflection_Presence" in css(driver, "#pa-header").text
        _no_injection(driver)
        screenshot(driver, tmp_path / "screens", "xss_pairs")
        served = [img.get_attribute("src") for img in driver.find_elements("css selector", "#pa-images img")]
        assert len(served) == 1 and "inside.png" not in served[0] and str(folder) not in served[0]
        assert external_requests(driver) == []
