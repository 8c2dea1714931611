"""Settings of Stage-II data (``mede2 rollout|judge|pairs|mmrp``): one documented dataclass tree.

Example ``mmrp.yaml`` (every key optional but the questions and the M1 model)::

    questions: curate_out/curated_image.jsonl
    work_dir: mmrp_work                  # rollouts.jsonl, judged.jsonl
    out_dir: data                        # the DPO dataset (dataset_dir of recipes/stage2_dpo.yaml)
    m1_backend: {backend: vllm, model: saves/m1, engine_args: {tensor_parallel_size: 8}}
    judge_backend: {backend: gemini, model: gemini-2.5-pro}
    rollout: {num_candidates: 8, temperature: 1.0}
    judge: {max_attempts: 3}
    pairs: {pairs_per_question: 4, positive_use: all}

Load with :func:`load_mmrp_config` (file or its ``mmrp:`` section, then ``key.path=value``
overrides); ``mede2 rollout|judge|pairs|mmrp -c mmrp.yaml`` do, and their flags set key paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mede2_plugin.client.config import BackendConfig
from mede2_plugin.core.settings import load_config
from mede2_plugin.mmrp.judge import JudgeConfig
from mede2_plugin.mmrp.pairs import IMAGE_MODES, PairingPolicy
from mede2_plugin.mmrp.rollout import RolloutConfig


@dataclass
class PairsConfig(PairingPolicy):
    """The pairing policy (the fields of :class:`~mede2_plugin.mmrp.pairs.PairingPolicy`) and the
    dataset it writes.

    Attributes:
        name: dataset name in ``dataset_info.json`` (``recipes/stage2_dpo.yaml`` uses ``mede2_stage2``).
        images: ``absolute`` (records keep absolute image paths) or ``copy`` (images copied into
            ``<out_dir>/images``, so the folder moves as a whole).
        judged_entry: also add ``<name>_judged``, the ``mede2_judged`` entry that builds pairs at load time.
        drop_flagged: leave out the pairs a reviewer flagged in ``mede2 review``: a review folder, or
            ``auto`` for the one found above the judged file (None: keep every pair).
    """

    name: str = "mede2_stage2"
    images: str = "absolute"
    judged_entry: bool = True
    drop_flagged: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.images not in IMAGE_MODES:
            raise ValueError(f"images must be one of {IMAGE_MODES}, got {self.images!r}")

    def policy(self) -> PairingPolicy:
        """The pairing policy alone (what a ``mede2_judged`` entry records)."""
        return PairingPolicy(**{f.name: getattr(self, f.name) for f in fields(PairingPolicy)})


@dataclass
class MMRPConfig:
    """Stage-II data (paper 3.3): M1 rollouts, the MMRP judge, the preference dataset.

    Attributes:
        questions: the image questions (a question file, e.g. ``curated_image.jsonl`` of ``mede2 curate``).
        work_dir: folder of the rollout and judged files when they are not given.
        rollouts: the rollout records (default ``<work_dir>/rollouts.jsonl``); the client's raw
            results go beside it (``rollouts.results.jsonl``).
        judged: the judged questions (default ``<work_dir>/judged.jsonl``); statistics go to
            ``judged.stats.json`` beside it.
        out_dir: the dataset folder (``dataset_dir`` of the DPO recipe).
        m1_backend: how M1 samples candidates (``backend`` defaults to ``local``; ``model`` is M1's folder).
        judge_backend: the MMRP judge (paper: Gemini-2.5-Pro).
        rollout: the rollout settings.
        judge: the judge settings.
        pairs: the pairing policy and the dataset written.
        prompts: prompt templates replaced by your own jinja files, ``{NAME: PATH}`` (e.g.
            ``mmrp_judge``); see :mod:`mede2_plugin.core.prompts`.
    """

    questions: str = ""
    work_dir: str = "mmrp_work"
    rollouts: str | None = None
    judged: str | None = None
    out_dir: str = ""
    m1_backend: BackendConfig | None = field(default=None, metadata={"defaults": {"backend": "local"}})
    judge_backend: BackendConfig = field(default_factory=lambda: BackendConfig(backend="gemini",
                                                                               model="gemini-2.5-pro"))
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)
    prompts: dict[str, str] = field(default_factory=dict)

    @property
    def rollouts_path(self) -> Path:
        return Path(self.rollouts) if self.rollouts else Path(self.work_dir) / "rollouts.jsonl"

    @property
    def judged_path(self) -> Path:
        return Path(self.judged) if self.judged else Path(self.work_dir) / "judged.jsonl"

    @property
    def stats_path(self) -> Path:
        return self.judged_path.with_name(self.judged_path.stem + ".stats.json")


def load_mmrp_config(source: str | Path | dict[str, Any] | None = None,
                     overrides: list[str] | tuple[str, ...] = ()) -> MMRPConfig:
    """The Stage-II settings: defaults, then ``source`` (YAML file or dict, or its ``mmrp:``
    section), then ``key.path=value`` overrides."""
    return load_config(MMRPConfig, source, overrides, section="mmrp")
