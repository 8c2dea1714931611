"""Stage-I and Stage-II training through LLaMA-Factory's own command, ``llamafactory-cli``.

:mod:`.llamafactory` writes the effective recipe and runs ``llamafactory-cli train|export``;
:mod:`.stage` trains one stage from a :class:`~mede2_plugin.train.stage.TrainRun` (LoRA merged
into a full model, the chat template written into it) for ``mede2 run``.
"""
