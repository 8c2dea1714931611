"""``mede2 run`` / ``mede2 demo``: the whole MedE2 recipe from one YAML, resumable, with a manifest.

    from mede2_plugin.pipeline import load_pipeline_config, run_pipeline
    config = load_pipeline_config("pipeline.yaml")
    status = run_pipeline(config, "pipeline.yaml", start=None, until="pairs")

Modules: :mod:`.config` (settings), :mod:`.stages` (what each stage does), :mod:`.runner` (order,
skip / resume / redo), :mod:`.state` (content hashes, fingerprints), :mod:`.manifest` (the run
manifest, secrets filtered), :mod:`.training` (``llamafactory-cli``), :mod:`.simulated` (the
demo's scripted API roles), :mod:`.isolation` (vLLM stages in a child process), :mod:`.cli`.
"""

from mede2_plugin.pipeline.config import PipelineConfig, load_pipeline_config
from mede2_plugin.pipeline.runner import run_pipeline
from mede2_plugin.pipeline.stages import STAGE_NAMES

__all__ = ["STAGE_NAMES", "PipelineConfig", "load_pipeline_config", "run_pipeline"]
