"""Text from TextMagic is untrusted: written by third parties (senders, contacts) or by a server that may not be
TextMagic. It is shown, never obeyed.

Characters a reader cannot see but a model reads (controls, bidirectional overrides, zero-width and tag
characters, private use, line and paragraph separators) could hide instructions in an SMS body; they come out
as visible escapes such as ``\\u202e``. The client applies this to every string of every answer, keys and
nested values included, and to TextMagic's error texts: the one place it is done.
"""

from __future__ import annotations

import unicodedata
from typing import Any

_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Zl", "Zp"})
_KEPT = frozenset("\n\t")


def neutralise(text: str) -> str:
    """Show every invisible or direction-changing character as a visible escape such as \\u202e."""
    if text.isprintable():
        return text
    return "".join(
        char
        if char in _KEPT or unicodedata.category(char) not in _HIDDEN_CATEGORIES
        else f"\\u{ord(char):04x}"
        if ord(char) <= 0xFFFF
        else f"\\U{ord(char):08x}"
        for char in text
    )


def neutralise_json(value: Any) -> Any:
    """``value`` (decoded JSON) with every string in it, keys included, neutralised."""
    if isinstance(value, str):
        return neutralise(value)
    if isinstance(value, list):
        return [neutralise_json(item) for item in value]
    if isinstance(value, dict):
        return {neutralise(str(key)): neutralise_json(item) for key, item in value.items()}
    return value
