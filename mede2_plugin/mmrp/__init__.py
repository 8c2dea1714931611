"""Stage-II of MedE2 (paper section 3.3): Multimodal Medical Reasoning Preference (MMRP) data.

``rollout`` samples N candidates per image question from M1; ``prescreen`` fails wrong answers
without a judge call; ``judge`` rates the rest on the five MMRP criteria (Appendix-A prompt);
``pairs`` turns judged candidates into a LLaMA-Factory preference dataset under a pairing policy;
``stats`` summarises a judged file. ``config`` holds the one settings tree of the four commands
(:class:`~mede2_plugin.mmrp.config.MMRPConfig`) and ``stage`` runs them from it, for the command
line and ``mede2 run``. The ``mede2_judged`` LLaMA-Factory format that builds the pairs at load
time is a LLaMA-Factory hook: :mod:`mede2_plugin.llamafactory_ext.judged`.

Files, in order: questions JSONL -> ``rollouts.jsonl`` (+ ``rollouts.results.jsonl``, the
client's raw results) -> ``judged.jsonl`` (+ ``judged.results.jsonl``) -> a dataset folder with
``mede2_stage2.jsonl``, ``mede2_stage2_sharegpt.jsonl`` and ``dataset_info.json``.
"""

from mede2_plugin.mmrp.criteria import (
    CRITERIA,
    VERDICT_SCHEMA,
    VerdictError,
    parse_verdict,
)
from mede2_plugin.mmrp.pairs import (
    PairingPolicy,
    build_pairs,
    load_judged,
    write_preference_dataset,
)
from mede2_plugin.mmrp.stats import compute_stats, format_table

__all__ = [
    "CRITERIA",
    "VERDICT_SCHEMA",
    "PairingPolicy",
    "VerdictError",
    "build_pairs",
    "compute_stats",
    "format_table",
    "load_judged",
    "parse_verdict",
    "write_preference_dataset",
]
