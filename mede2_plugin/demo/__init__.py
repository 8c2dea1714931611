"""What ``mede2 demo`` needs besides the pipeline: the scripted stand-ins for the API roles
(:mod:`.simulated`), served by the local fake OpenAI-compatible server of :mod:`mede2_plugin.testing`."""
