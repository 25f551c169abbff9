"""Text that came from outside (a server's answer, a config's fields, a manifest's cells), made
safe to keep and to show: every character printable, and no string longer than a bound.

>>> printable("ok\\x1b]0;owned\\x07 \\x9b2J")
'ok\\\\x1b]0;owned\\\\x07 \\\\x9b2J'
>>> clip("x" * 20, 10)
'xxx… (cut)'
"""

from __future__ import annotations

import re

MAX_CODE_CHARS = 100        # an error code: ModelArts.0104, APIGW.0308, HTTP.503
MAX_MESSAGE_CHARS = 1000    # an error message from a server
MAX_ID_CHARS = 128          # a request id
CUT = "… (cut)"
# C0 and C1 control characters and DEL: what moves a terminal's cursor, clears its screen, sets
# its title or opens a hyperlink. Tabs and newlines too: a server's text is shown on one line. And
# the bidi controls and marks, which reorder what a line shows (a name could read as another).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with every control and bidi character written out (``\\x1b``, ``\\u202e``), as
    Python would show it."""
    return _CONTROL.sub(_written_out, text) if _CONTROL.search(text) else text


def _written_out(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, with a mark that it was cut."""
    return text if len(text) <= limit else text[: max(0, limit - len(CUT))] + CUT


def from_server(value: object, limit: int) -> str:
    """A string a server sent, as batchcfg keeps it: printable and bounded."""
    return clip(printable(str(value)), limit)
