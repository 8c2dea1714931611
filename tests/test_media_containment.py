"""Files outside the data never leave the machine (issue 13, section 2).

An image reference in a ``mede2 batch`` input or a question bank that leads outside its data
folder (``../../../../etc/passwd``, ``/etc/hostname``, ``file:///etc/hostname``) is refused before
anything is read or sent: that record fails with the reason, the others go on. The explicit
setting (``--allow-outside-media``) lets such paths through, but a file that is not an image is
refused even then.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from client_helpers import final_rows, make_png

from mede2_plugin.cli import main
from mede2_plugin.core.media import MediaPolicy, MediaRefused
from mede2_plugin.testing import FakeOpenAIServer
from mede2_plugin.testing.fake_openai import image_urls

HOSTILE = {"dotdot": "../../../../../../../../etc/passwd", "absolute": "/etc/hostname",
           "file_uri": "file:///etc/hostname"}


def _request(rid: str, images: list[str] | None = None, parts: list[str] | None = None) -> dict:
    content: object = f"describe {rid}"
    if parts:
        content = [{"type": "image_url", "image_url": {"url": url}} for url in parts] + [{"type": "text",
                                                                                            "text": content}]
    record = {"id": rid, "messages": [{"role": "user", "content": content}]}
    if images:
        record["images"] = images
    return record


def _batch(tmp_path: Path, server: FakeOpenAIServer, records: list[dict], *flags: str) -> tuple[int, dict]:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    requests = data / "requests.jsonl"
    requests.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    output = tmp_path / "out" / "results.jsonl"
    code = main(["batch", "--input", str(requests), "--output", str(output), "--backend", "openai",
                 "--model", "fake", "--base-url", server.base_url, "--max-retries", "0", "--no-progress",
                 "--cache-dir", "off", *flags])
    return code, final_rows(output)


def _sent_bytes(server: FakeOpenAIServer) -> list[bytes]:
    return [base64.b64decode(url.split(",", 1)[1]) for call in server.calls for url in image_urls(call.body)
            if url.startswith("data:")]


def test_hostile_image_paths_in_a_batch_input_are_refused_and_the_others_go_on(tmp_path):
    make_png(tmp_path / "data" / "scan.png")
    records = [_request("good", images=["scan.png"])]
    records += [_request(f"images-{kind}", images=[ref]) for kind, ref in HOSTILE.items()]
    records += [_request(f"part-{kind}", parts=[ref]) for kind, ref in HOSTILE.items()]
    with FakeOpenAIServer(reply="a red square") as server:
        code, rows = _batch(tmp_path, server, records)
        sent = _sent_bytes(server)
        prompts = [json.dumps(call.body) for call in server.calls]
    assert code == 1  # some records failed
    assert rows["good"]["error"] is None and rows["good"]["samples"][0]["text"] == "a red square"
    for rid in [r["id"] for r in records[1:]]:
        error = rows[rid]["error"]
        assert rows[rid]["samples"] == [] and "outside the data folder" in error and "allow_outside_media" in error, rid
    assert len(prompts) == 1 and "describe good" in prompts[0]  # nothing of a refused record was sent
    assert all(b"root:" not in data and Path("/etc/hostname").read_bytes() not in data for data in sent)


def test_allowed_outside_media_is_sent_but_a_non_image_never(tmp_path):
    outside = make_png(tmp_path / "elsewhere" / "outside.png", color=(10, 200, 10))
    records = [_request("outside-image", images=[str(outside)]), _request("outside-text", images=["/etc/hostname"])]
    with FakeOpenAIServer(reply="seen") as server:
        code, rows = _batch(tmp_path, server, records)
        assert code == 1 and "outside the data folder" in rows["outside-image"]["error"] and server.call_count == 0
        code, rows = _batch(tmp_path, server, records, "--allow-outside-media")
        sent = _sent_bytes(server)
    assert rows["outside-image"]["error"] is None and sent == [outside.read_bytes()]
    assert "not a readable image" in rows["outside-text"]["error"] and server.call_count == 1


def test_a_symlink_out_of_the_data_folder_is_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "innocent.png").symlink_to("/etc/hostname")
    with pytest.raises(MediaRefused, match="outside the data folder"):
        MediaPolicy.of(data).resolve("innocent.png")
    assert MediaPolicy.of(data).resolve("missing.png") == str(data / "missing.png")  # nothing read, nothing sent


def _bank(folder: Path, images: dict[str, list[str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"id": qid, "source": "t", "question": f"What does image {qid} show?", "options": {"A": "x", "B": "y"},
             "answer": "A", "images": refs} for qid, refs in images.items()]
    path = folder / "bank.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_question_banks_reject_hostile_images_with_the_reason(tmp_path):
    from mede2_plugin.data import load_bank

    make_png(tmp_path / "bank" / "ok.png")
    bank = _bank(tmp_path / "bank", {"ok": ["ok.png"], **{kind: [ref] for kind, ref in HOSTILE.items()},
                                     "notes": ["notes.png"]})
    (tmp_path / "bank" / "notes.png").write_text("not a picture", encoding="utf-8")
    result = load_bank(bank, "bank")
    assert [q.id for q in result.questions] == ["ok"]
    reasons = {r.id: r.reason for r in result.rejected}
    assert set(reasons) == {*HOSTILE, "notes"}
    assert all("outside the data folder" in reasons[kind] for kind in HOSTILE)
    assert "not a readable image" in reasons["notes"]
    allowed = load_bank(bank, "bank", allow_outside_media=True)
    assert {q.id for q in allowed.questions} == {"ok"}  # /etc files are no images: refused even when allowed
    assert all("not a readable image" in r.reason for r in allowed.rejected if r.id in HOSTILE)


def test_rollout_rejects_a_hostile_image_and_sends_the_rest(tmp_path):
    from mede2_plugin.client import BackendConfig
    from mede2_plugin.mmrp.rollout import RolloutConfig, run_rollouts

    make_png(tmp_path / "bank" / "ok.png")
    bank = _bank(tmp_path / "bank", {"ok": ["ok.png"], "leak": ["/etc/hostname"]})
    with FakeOpenAIServer(reply="<think>x</think><answer>\\boxed{A}</answer>") as server:
        config = BackendConfig(backend="openai", model="m1", base_url=server.base_url, progress=False,
                               cache_dir="off", max_retries=0)
        summary = run_rollouts(bank, tmp_path / "rollouts.jsonl", config, RolloutConfig(num_candidates=1))
        assert server.call_count == 1 and "hostname" not in json.dumps(server.calls[0].body)
    records = {r["id"]: r for r in map(json.loads, (tmp_path / "rollouts.jsonl").read_text().splitlines())}
    assert (summary.ok, summary.rejected) == (1, 1)
    assert records["leak"]["status"] == "rejected" and "outside the data folder" in records["leak"]["reason"]
