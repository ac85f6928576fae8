"""Text from outside (config, acks, MQTT payloads and topics): refused with control characters
where it is input, escaped where it is displayed (terminal, log lines), cleaned for XML.

Control characters are C0 (``\\x00``-``\\x1f``), DEL and C1 (``\\x80``-``\\x9f``; ``\\x9b``
is a one-byte CSI to some terminals). For display, the Unicode line separators and bidirectional
overrides/isolates (text that reads differently than it is) are escaped too.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

__all__ = ["PlainText", "printable", "reject_control", "xml_text"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_UNSAFE_DISPLAY = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_WHITESPACE = {"\t": " ", "\n": " ", "\r": " "}
# XML 1.0 Char: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]
_NOT_XML = re.compile(r"[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def reject_control(value: str) -> str:
    """``value`` unchanged, or ValueError naming the first control character and its position."""
    m = _CONTROL.search(value)
    if m:
        raise ValueError(f"contains a control character (U+{ord(m[0]):04X} at position {m.start()}); "
                         "use plain text")
    return value


#: A ``str`` field refusing control characters (pydantic).
PlainText = Annotated[str, AfterValidator(reject_control)]


def printable(value: object) -> str:
    """``str(value)`` safe to show on a terminal or in one log line: tab, CR and LF become spaces,
    every other control, line separator or bidi override becomes a ``\\uXXXX`` escape (so a
    compact JSON text stays valid JSON with the same value)."""
    text = str(value)
    if not _UNSAFE_DISPLAY.search(text):
        return text
    return _UNSAFE_DISPLAY.sub(lambda m: _WHITESPACE.get(m[0]) or f"\\u{ord(m[0]):04x}", text)


def xml_text(value: str) -> str:
    """``value`` with the characters XML 1.0 cannot hold at all (``\\x00``, most C0, U+FFFE/FFFF)
    replaced by U+FFFD."""
    return _NOT_XML.sub("\ufffd", value)
