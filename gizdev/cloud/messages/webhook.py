"""SMS through an HTTP webhook: a JSON POST to a URL the operator's SMS gateway (or a small adapter) serves.

The body is a JSON template, e.g. ``{"to": "{to}", "text": "{text}", "code": "{code}"}``: the template is parsed as
JSON once, and in every string of it the placeholders ``{to}``, ``{text}``, ``{code}``, ``{link}``, ``{channel}``
are replaced by the message's values, which therefore stay JSON strings (a quote or brace in a value cannot
change the document's shape). Any 2xx answer is success; anything else, a timeout or no connection is
:class:`SendFailed` (the caller answers 9037 and forgets the code).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

from gizdev.cloud.messages.message import Message, SendFailed

__all__ = ["DEFAULT_TEMPLATE", "PLACEHOLDERS", "WebhookSender", "WebhookSettings"]

DEFAULT_TEMPLATE = '{"to": "{to}", "text": "{text}", "code": "{code}"}'
PLACEHOLDERS = ("to", "text", "code", "link", "channel")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_TEMPLATE_LEN = 4096


def _placeholders_in(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(_PLACEHOLDER.findall(value))
    if isinstance(value, dict):
        return {name for item in (*value.keys(), *value.values()) for name in _placeholders_in(item)}
    if isinstance(value, list):
        return {name for item in value for name in _placeholders_in(item)}
    return set()


def _fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda match: values[match.group(1)], value)
    if isinstance(value, dict):
        return {_fill(key, values): _fill(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, values) for item in value]
    return value


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    url: str
    body_template: str = DEFAULT_TEMPLATE
    timeout_s: float = 10.0
    template: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            parsed_url = URL(self.url)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"the SMS webhook URL {self.url!r} is not a URL: {exc}") from None
        if parsed_url.scheme not in ("http", "https") or not parsed_url.host:
            raise ValueError(f"the SMS webhook URL must be http:// or https:// with a host, not {self.url!r}")
        if len(self.body_template) > MAX_TEMPLATE_LEN:
            raise ValueError(f"the SMS webhook body template is longer than {MAX_TEMPLATE_LEN} characters")
        try:
            template = json.loads(self.body_template)
        except ValueError as exc:
            raise ValueError(f"the SMS webhook body template is not JSON: {exc}") from None
        unknown = _placeholders_in(template) - set(PLACEHOLDERS)
        if unknown:
            raise ValueError(
                f"the SMS webhook body template has unknown placeholders {', '.join(sorted(unknown))}; "
                f"known: {', '.join(PLACEHOLDERS)}"
            )
        if not 0 < self.timeout_s <= 300:
            raise ValueError("the SMS webhook timeout must be between 0 and 300 s")
        object.__setattr__(self, "template", template)

    def body(self, message: Message) -> Any:
        """The JSON document sent for ``message``."""
        values = {
            "to": message.to,
            "text": message.text,
            "code": message.code or "",
            "link": message.link or "",
            "channel": message.channel,
        }
        return _fill(self.template, values)


@dataclass(frozen=True, slots=True)
class WebhookSender:
    """Sends ``sms`` messages by POSTing the templated body to the webhook."""

    settings: WebhookSettings

    async def send(self, message: Message) -> None:
        if message.channel != "sms":
            raise SendFailed(f"the SMS webhook carries SMS, not {message.channel} messages")
        settings = self.settings
        timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(settings.url, json=settings.body(message), allow_redirects=False) as response,
            ):
                if not 200 <= response.status < 300:
                    answer = (await response.content.read(200)).decode("utf-8", "replace")
                    raise SendFailed(f"the SMS webhook answered HTTP {response.status}: {answer}")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise SendFailed(f"the SMS webhook could not be reached: {type(exc).__name__}: {exc}"[:300]) from exc
