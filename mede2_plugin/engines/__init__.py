"""The engines that run outside the main environment: the separate vLLM environment and its worker.

vLLM and LLaMA-Factory cannot share one environment (vLLM needs a newer transformers than
LLaMA-Factory 0.9.5 allows), so vLLM lives in its own virtual environment, built by
``mede2 vllm-env`` (:mod:`mede2_plugin.engines.vllm_env`). A process without vLLM reaches it
through :mod:`mede2_plugin.engines.vllm_worker`, run by that environment's Python.
"""
