"""The vLLM engine as a subprocess, run by the vLLM environment's Python.

A process without vLLM (the main environment, where LLaMA-Factory lives) reaches vLLM through
this module, started as ``VLLM_PYTHON -m mede2_plugin.engines.vllm_worker``:

* ``--serve --config CFG.json``: build the engine once, print ``{"ready": ...}``, then answer
  each stdin line (a JSON list of request dicts) with one stdout line (a JSON list of result
  dicts, see :meth:`VLLMEngine.generate`). EOF on stdin ends it. vLLM's own log lines go to stderr;
  stdout carries only these replies. Used by the ``vllm`` backend
  (:class:`mede2_plugin.client.backends.vllm_backend.VLLMBackend`).
* ``--config CFG.json --requests IN.jsonl --output OUT.jsonl``: one batch from a JSONL file of
  requests to a JSONL file of ``{"id", ...result}`` rows (handy by hand and in tests).

``CFG.json`` holds the fields of :class:`~mede2_plugin.engines.vllm_engine.VLLMEngineConfig`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _serve(config_path: Path) -> int:
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # from here on anything printed (vLLM, tqdm) goes to stderr
    from mede2_plugin.engines.vllm_engine import VLLMEngine, engine_config_from_json

    try:
        engine = VLLMEngine(engine_config_from_json(config_path.read_text(encoding="utf-8")))
    except Exception as err:  # noqa: BLE001 - reported to the parent as one line
        replies.write(json.dumps({"fatal": f"{type(err).__name__}: {err}"}) + "\n")
        replies.flush()
        return 1
    replies.write(json.dumps({"ready": True, "vllm": engine.version, "pid": os.getpid()}) + "\n")
    replies.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            results = engine.generate(json.loads(line))
        except Exception as err:  # noqa: BLE001 - the chunk fails, the worker stays up
            results = {"chunk_error": f"{type(err).__name__}: {err}"}
        replies.write(json.dumps(results) + "\n")
        replies.flush()
    engine.close()
    return 0


def _batch(config_path: Path, requests_path: Path, output_path: Path) -> int:
    from mede2_plugin.engines.vllm_engine import VLLMEngine, engine_config_from_json

    requests = []
    with open(requests_path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    requests.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise SystemExit(f"{requests_path}:{number}: not JSON: {err}") from None
    engine = VLLMEngine(engine_config_from_json(config_path.read_text(encoding="utf-8")))
    results = engine.generate(requests)
    with open(output_path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps({"id": request.get("id"), **result}) + "\n"
                          for request, result in zip(requests, results))
    engine.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mede2_plugin.engines.vllm_worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, type=Path, help="JSON file of VLLMEngineConfig fields")
    parser.add_argument("--serve", action="store_true", help="answer JSON lines on stdin until EOF")
    parser.add_argument("--requests", type=Path, help="JSONL file of requests (batch mode)")
    parser.add_argument("--output", type=Path, help="JSONL file to write results to (batch mode)")
    args = parser.parse_args(argv)
    if args.serve:
        return _serve(args.config)
    if not (args.requests and args.output):
        parser.error("give --serve, or both --requests and --output")
    return _batch(args.config, args.requests, args.output)


if __name__ == "__main__":
    sys.exit(main())
