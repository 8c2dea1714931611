"""Local fake provider servers for tests and the offline demo (127.0.0.1 only).

* :class:`FakeOpenAIServer` - OpenAI chat-completions wire format (``base_url`` ends in ``/v1``).
* :class:`FakeGeminiServer` - Gemini ``generateContent`` wire format as google-genai sends it to a
  custom ``HttpOptions(base_url=...)``.

Both take ``reply`` (a callable or a constant string), ``latency``, ``faults`` (see
:class:`Fault`) and ``max_samples``, run in a background thread as context managers, and log every
call in ``server.calls`` (``call_count``, ``answered_count``). Both also serve their provider's
batch API (OpenAI Batch and Files APIs; Gemini batch mode with inline requests): batches finish
``batch_delay`` seconds after creation, with per-item faults and expiry, recorded in
``server.book`` (:mod:`mede2_plugin.testing.batches`); ``server.events`` logs those requests and
``server.hold(kind)`` stops one at a chosen step, for kill tests.
"""

from mede2_plugin.testing.fake_gemini import FakeGeminiServer
from mede2_plugin.testing.fake_openai import FakeOpenAIServer, prompt_text
from mede2_plugin.testing.server import Call, FakeServer, Fault, count_tokens

__all__ = ["Call", "FakeGeminiServer", "FakeOpenAIServer", "FakeServer", "Fault", "count_tokens", "prompt_text"]
