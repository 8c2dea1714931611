"""The tiny model through the real `llamafactory-cli api` server (openai backend) and in-process."""

from __future__ import annotations

import pytest
from client_helpers import final_rows, make_png

from mede2_plugin.client import BackendConfig, ChatRequest, run_batch


def image_request(image, request_id: str, **fields) -> ChatRequest:
    return ChatRequest(id=request_id, messages=[
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": str(image)}},
                                     {"type": "text", "text": "Which finding is shown?"}]}], **fields)


@pytest.mark.slow
def test_openai_backend_against_llamafactory_api_server(llamafactory_api, tmp_path):
    image = make_png(tmp_path / "scan.png")
    requests = [image_request(image, "img", n=2, temperature=0.8, max_tokens=6),
                ChatRequest(id="txt", messages=[{"role": "user", "content": "Hello there"}], max_tokens=6)]
    config = BackendConfig(backend="openai", model="tiny", base_url=llamafactory_api, concurrency=2,
                           max_retries=1, timeout_s=120, progress=False, cache_dir=str(tmp_path / "cache"))
    summary = run_batch(requests, tmp_path / "out.jsonl", config)
    assert summary.succeeded == 2, final_rows(tmp_path / "out.jsonl")
    rows = final_rows(tmp_path / "out.jsonl")
    assert len(rows["img"]["samples"]) == 2 and len(rows["txt"]["samples"]) == 1
    for row in rows.values():
        assert row["usage"]["prompt_tokens"] > 0 and 0 < row["usage"]["completion_tokens"]
        assert all(isinstance(s["text"], str) and s["finish_reason"] in ("stop", "length") for s in row["samples"])
    again = run_batch(requests, tmp_path / "again.jsonl", config)  # served from the cache
    assert again.cache_hits == 2 and again.calls == 0


@pytest.mark.slow
def test_local_backend_with_tiny_model(tiny_model_dir, tmp_path):
    image = make_png(tmp_path / "scan.png")
    requests = [image_request(image, "img", n=3, temperature=0.9, max_tokens=5),
                ChatRequest(id="txt", messages=[{"role": "user", "content": "Hello"}], max_tokens=5),
                ChatRequest(id="bad", messages=[{"role": "assistant", "content": "no user turn"}])]
    config = BackendConfig(backend="local", model=str(tiny_model_dir), progress=False, batch_size=2,
                           cache_dir=str(tmp_path / "cache"), engine_args={"template": "mede2_qwen2_vl"})
    summary = run_batch(requests, tmp_path / "out.jsonl", config)
    rows = final_rows(tmp_path / "out.jsonl")
    assert (summary.succeeded, summary.failed, summary.cost_usd) == (2, 1, 0.0)
    assert len(rows["img"]["samples"]) == 3 and len(rows["txt"]["samples"]) == 1
    assert rows["img"]["usage"]["completion_tokens"] > 0 and rows["img"]["cost_usd"] == 0.0
    assert "user turn" in rows["bad"]["error"]
    # the image reached the model: its prompt is longer than the same text without the image
    no_image = ChatRequest(id="plain", max_tokens=5, messages=[
        {"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Which finding is shown?"}])
    run_batch([no_image], tmp_path / "out.jsonl", config)
    assert final_rows(tmp_path / "out.jsonl")["plain"]["usage"]["prompt_tokens"] < rows["img"]["usage"]["prompt_tokens"]


@pytest.mark.slow
def test_local_backend_seed_makes_a_sampled_request_independent_of_what_ran_before(tiny_model_dir, tmp_path):
    """A seeded request gives the same samples alone or after others (resume equals a clean run);
    without a seed the same request samples differently on a second call."""
    from mede2_plugin.client import SharedBackend

    def ask(request_id: str, seed: int | None) -> ChatRequest:
        return ChatRequest(id=request_id, messages=[{"role": "user", "content": "Name a sign of sepsis"}],
                           n=2, temperature=1.0, max_tokens=12, seed=seed)

    config = BackendConfig(backend="local", model=str(tiny_model_dir), progress=False, cache_dir="off",
                           engine_args={"template": "mede2_qwen2_vl"})

    def texts(rows: dict, request_id: str) -> list[str]:
        return [s["text"] for s in rows[request_id]["samples"]]

    with SharedBackend(config) as engine:
        run_batch([ask("alone", 7)], tmp_path / "a.jsonl", config, backend=engine)
        run_batch([ask("warm-up", None), ask("after", 7), ask("other-seed", 8)], tmp_path / "b.jsonl", config,
                  backend=engine)
        run_batch([ask("unseeded-1", None)], tmp_path / "c.jsonl", config, backend=engine)
        run_batch([ask("unseeded-2", None)], tmp_path / "c.jsonl", config, backend=engine)
        assert engine.builds == 1  # four batches, one model load
    a, b, c = (final_rows(tmp_path / f"{name}.jsonl") for name in "abc")
    assert texts(a, "alone") == texts(b, "after")
    assert texts(b, "after") != texts(b, "other-seed")
    assert texts(c, "unseeded-1") != texts(c, "unseeded-2")
