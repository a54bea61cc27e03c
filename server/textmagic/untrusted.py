"""Text written by third parties (senders, contacts, TextMagic's own messages): shown, never obeyed.

Characters a reader cannot see but a model reads (controls, bidirectional overrides, zero-width and tag
characters, private use, line and paragraph separators) could hide instructions in an SMS body; they come out
as visible escapes such as ``\\u202e``.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator

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


UntrustedText = Annotated[str, AfterValidator(neutralise)]
