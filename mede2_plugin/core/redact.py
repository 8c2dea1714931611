"""One redactor for everything the package writes: manifests, results rows, reports.

:class:`Redactor` replaces with ``***`` the values of secret-looking environment variables (and of
the variables it is told hold secrets, e.g. every backend's ``api_key_env``), the values of
secret-looking keys (``api_key``, ``token``, ``password``, ``authorization``, ...), credentials
inside URLs and strings shaped like provider keys. ``api_key_env`` keeps the variable's *name*,
never its value.
"""

from __future__ import annotations

import os
import re
from typing import Any

REDACTED = "***"
SECRET_ENV_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH)", re.IGNORECASE)
SECRET_FIELD = re.compile(
    r"^(?:.*[_-])?(?:api[_-]?key|apikey|key|token|access[_-]?token|secret|client[_-]?secret|password|passwd|"
    r"credentials?|authorization|auth|bearer|cookie)$", re.IGNORECASE)
ENV_VAR_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
KEY_SHAPES = re.compile(
    r"(sk-[A-Za-z0-9_\-]{12,}|AIza[0-9A-Za-z_\-]{20,}|hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|"
    r"xox[abpr]-[A-Za-z0-9\-]{10,}|(?i:bearer)\s+[A-Za-z0-9._\-]{12,})")
URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.\-]*://)[^/\s:@]+(?::[^/\s@]*)?@", re.IGNORECASE)
URL_SECRET_PARAM = re.compile(r"(?P<name>[?&](?:api[_-]?key|key|token|access_token|sig|signature|secret)=)[^&#\s]+",
                              re.IGNORECASE)
#: shortest value of a secret-*looking* variable that is redacted (shorter ones are flags, not keys)
MIN_SECRET_LENGTH = 6
#: shortest value of a variable *named* as holding a secret (``extra_env_names``) that is redacted
MIN_NAMED_SECRET_LENGTH = 4


class Redactor:
    """Replaces anything that looks like a secret with ``***`` in nested JSON-able data.

    Args:
        extra_env_names: names of further environment variables whose values are secrets (e.g.
            every ``api_key_env`` of the configured backends).
        environ: the environment to read the secret values from (default: ``os.environ``).
    """

    def __init__(self, extra_env_names: list[str] | tuple[str, ...] = (),
                 environ: dict[str, str] | None = None) -> None:
        environ = dict(os.environ if environ is None else environ)
        guessed = {environ[n] for n in environ if SECRET_ENV_NAME.search(n)}
        named = {environ[n] for n in extra_env_names if n and n in environ}
        values = {v for v in guessed if len(v) >= MIN_SECRET_LENGTH}
        values |= {v for v in named if len(v) >= MIN_NAMED_SECRET_LENGTH}
        self.secrets = sorted(values, key=len, reverse=True)

    def text(self, value: str) -> str:
        """``value`` with every secret it holds replaced."""
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        value = KEY_SHAPES.sub(REDACTED, value)
        value = URL_USERINFO.sub(lambda m: m.group("scheme") + REDACTED + "@", value)
        return URL_SECRET_PARAM.sub(lambda m: m.group("name") + REDACTED, value)

    def __call__(self, data: Any, key: str | None = None) -> Any:
        if isinstance(data, dict):
            return {str(k): self(v, str(k)) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [self(v) for v in data]
        if isinstance(data, str):
            if key is not None and SECRET_FIELD.match(key) and data:
                return REDACTED
            if key == "api_key_env" and not ENV_VAR_NAME.match(data):
                return REDACTED
            return self.text(data)
        return data
