"""``mede2 run`` / ``mede2 demo``: the whole MedE2 recipe from one YAML, resumable, with a manifest.

    from mede2_plugin.pipeline import load_pipeline_config, run_pipeline
    config = load_pipeline_config("pipeline.yaml")
    status = run_pipeline(config, "pipeline.yaml", start=None, until="pairs")

The pipeline only orchestrates: each stage package runs its own work from its config and declares
its inputs and outputs (:class:`mede2_plugin.core.stage.Step`). Modules: :mod:`.config` (the typed
settings of every stage in one file), :mod:`.steps` (the steps in order, each one's config wired to
the run), :mod:`.runner` (skip / resume / redo, one run per folder), :mod:`.state` (content hashes,
fingerprints), :mod:`.manifest` (the run manifest, secrets filtered), :mod:`.simulated` (the
demo's scripted API roles), :mod:`.cli`.
"""

from mede2_plugin.pipeline.config import PipelineConfig, load_pipeline_config
from mede2_plugin.pipeline.runner import run_pipeline
from mede2_plugin.pipeline.steps import STAGE_NAMES

__all__ = ["STAGE_NAMES", "PipelineConfig", "load_pipeline_config", "run_pipeline"]
