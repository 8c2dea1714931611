"""Serving the review app: local, offline, and nothing but the run's own files.

* bound to 127.0.0.1 unless told otherwise; a public Gradio share link only with ``share=True``;
* analytics and telemetry off; the page loads nothing from another host: Gradio's own HTML asks
  for a CDN script (iframe-resizer) and preconnects to Google Fonts, which
  :class:`OfflinePage` removes, and the theme uses system fonts; a Content-Security-Policy
  header then forbids any other host for scripts, styles, fonts, images and connections;
* Gradio serves files only from the app's private folder (no ``allowed_paths``): the images the
  views show are copies :class:`~mede2_plugin.review.app.Served` makes of files inside the run
  and its data folders, so no path from the browser reaches anything else.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; media-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
       "worker-src 'self' blob:; frame-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'")
REMOTE_TAGS = re.compile(rb"<script\b[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>\s*</script>|<link\b[^>]*\bhref=\"https?://[^\"]*\"[^>]*>",
                         re.IGNORECASE)


class OfflinePage:
    """ASGI middleware: removes remote ``<script src>`` / ``<link href>`` tags from HTML pages and
    adds the Content-Security-Policy to every response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] | None = None
        body: list[bytes] = []

        async def patched(message: dict[str, Any]) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"content-security-policy"]
                headers += [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff")]
                message = {**message, "headers": headers}
                content_type = {k.lower(): v for k, v in headers}.get(b"content-type", b"")
                if content_type.startswith(b"text/html"):
                    start = message  # hold it until the body is rewritten
                    return
            elif message["type"] == "http.response.body" and start is not None:
                body.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                html = REMOTE_TAGS.sub(b"", b"".join(body))
                headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
                await send({**start, "headers": headers + [(b"content-length", str(len(html)).encode())]})
                await send({"type": "http.response.body", "body": html})
                return
            await send(message)

        await self.app(scope, receive, patched)


def private_folder() -> Path:
    """A fresh folder for this server's served copies and Gradio's uploads and cache, set as
    Gradio's temp and cache folders (before the app is built), with analytics off."""
    folder = Path(tempfile.mkdtemp(prefix="mede2-review-"))
    os.environ["GRADIO_TEMP_DIR"] = str(folder / "gradio")
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(folder / "gradio" / "examples")
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    return folder


def launch(blocks: Any, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           open_browser: bool = False) -> str:
    """Start the app in the background (see the module docstring); returns its local URL."""
    import warnings

    from starlette.middleware import Middleware

    blocks.queue(default_concurrency_limit=1)  # decisions are written one at a time, in order
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # show_api: renamed in Gradio 6
        blocks.launch(server_name=host, server_port=port, share=share, inbrowser=open_browser,
                      prevent_thread_lock=True, show_api=False, show_error=True, allowed_paths=[],
                      max_file_size="1mb", ssr_mode=False, quiet=True,
                      app_kwargs={"middleware": [Middleware(OfflinePage)]})
    return blocks.local_url
