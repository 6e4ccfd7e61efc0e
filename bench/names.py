"""Names that become parts of paths: a run id, a sweep, a figure. One check that a name is a single plain path
component, and one way to make any text into one, so that no name read from a config or a record can
reach outside the folder it is joined under."""

from __future__ import annotations

import hashlib
import re

from bench.errors import ConfigError

PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
ACCEPTED = "a plain name of letters, digits, '.', '_' and '-', not starting with '.' (it becomes a file or folder name)"


def check_component(key: str, value) -> None:
    """Raise ConfigError unless `value` is one plain path component."""
    if not isinstance(value, str) or not PLAIN.fullmatch(value) or len(value) > 200:
        raise ConfigError(key, value, ACCEPTED)


def component(text: str) -> str:
    """`text` as one plain path component: itself where it is one, else a slug of it and a digest, so that
    two texts never share a name."""
    text = str(text)
    if PLAIN.fullmatch(text) and len(text) <= 100:
        return text
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip(".-")[:60] or "name"
    return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
