"""How fast the review app is on a run: server start, then each view in headless Chromium. Prints JSON.

    python tests/benchmarks/bench_review.py runs/demo [--repeats 3] [--screens docs/review]

The run folder is copied first (the app writes reviews into it). Figures: ``server_start_s``
(process start until the page answers), and per view the median seconds until its first item
(or its content) is on the screen: ``page_load_s`` (page opened to the Rewrites view filled),
``judge_audit_s``, ``pairs_s``, ``run_report_s`` (tab click to content), and ``save_decision_s``
(an accept until the next item shows). With ``--screens`` one screenshot per view is saved.
Needs Debian's ``chromium`` and ``chromium-driver`` and selenium.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1800"]
VIEWS = {"Judge audit": "#ja-current[data-item]:not([data-item=''])", "Pairs": "#pa-current[data-item]:not([data-item=''])",
         "Run report": "#rp-scaling img"}


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(run: Path) -> tuple[subprocess.Popen, str, float]:
    port = _port()
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "mede2_plugin.cli", "review", str(run), "--port", str(port),
                                "--reviewer", "bench"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return process, url, time.perf_counter() - start
        except OSError:
            if process.poll() is not None or time.perf_counter() - start > 120:
                raise RuntimeError("the review server did not start") from None
            time.sleep(0.1)


def _driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in FLAGS + [f"--user-data-dir={tempfile.mkdtemp(prefix='mede2-bench-')}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)


def _until(driver, selector: str, timeout: float = 60.0) -> float:
    from selenium.webdriver.common.by import By

    start = time.perf_counter()
    while not driver.find_elements(By.CSS_SELECTOR, selector):
        if time.perf_counter() - start > timeout:
            raise TimeoutError(selector)
        time.sleep(0.02)
    return time.perf_counter() - start


def _shot(driver, folder: Path | None, name: str) -> None:
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    size = driver.get_window_size()
    missing = driver.execute_script(  # the bottom of the lowest element, below the window's inner height
        "return Math.ceil(Math.max(...Array.from(document.querySelectorAll('body *'), "
        "e => e.getBoundingClientRect().bottom + window.scrollY))) + 20 - window.innerHeight")
    driver.set_window_size(size["width"], size["height"] + max(0, missing))
    driver.save_screenshot(str(folder / f"{name}.png"))
    driver.set_window_size(size["width"], size["height"])


def one_round(url: str, screens: Path | None) -> dict[str, float]:
    from selenium.webdriver.common.by import By

    driver = _driver()
    try:
        times = {}
        start = time.perf_counter()
        driver.get(url)
        _until(driver, "#rw-current[data-item]:not([data-item=''])")
        times["page_load_s"] = time.perf_counter() - start
        _shot(driver, screens, "rewrites")
        for title, selector in VIEWS.items():
            [tab] = [b for b in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]") if b.text.strip() == title]
            start = time.perf_counter()
            tab.click()
            _until(driver, selector)
            times[title.lower().replace(" ", "_") + "_s"] = time.perf_counter() - start
            _shot(driver, screens, title.lower().replace(" ", "_"))
        [tab] = [b for b in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]") if b.text.strip() == "Rewrites"]
        tab.click()
        item = driver.find_element(By.CSS_SELECTOR, "#rw-current").get_attribute("data-item")
        start = time.perf_counter()
        driver.find_element(By.CSS_SELECTOR, "#rw-accept").click()
        _until(driver, f"#rw-saved[data-item='{item}']")
        times["save_decision_s"] = time.perf_counter() - start
        return times
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a finished `mede2 demo` / `mede2 run` output folder (copied, not changed)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--screens", help="save one screenshot per view here (first round)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mede2-bench-review-")) / "run"
    shutil.copytree(args.run, work, ignore=shutil.ignore_patterns("review", "superseded"))
    process, url, started = _start(work)
    try:
        rounds = [one_round(url, Path(args.screens) if args.screens and n == 0 else None) for n in range(args.repeats)]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        shutil.rmtree(work.parent, ignore_errors=True)
    result = {"run": str(args.run), "repeats": args.repeats, "server_start_s": round(started, 3)}
    result.update({key: round(statistics.median(r[key] for r in rounds), 3) for key in rounds[0]})
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
