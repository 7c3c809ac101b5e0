"""Making outside text inert where we print it: no control characters, no forged lines.

Alert labels and annotations are written by whoever can push an alert. Printed as they
are, a newline in a summary starts a line of its own in a Slack message (``*Status:*
RESOLVED`` under our real status line), an ANSI/OSC escape sequence rewrites a terminal's
title or screen, and a bidi override makes a line read otherwise than it is. Here:

- ``clean``: the text without control characters (C0 but tab and newline, DEL, C1),
  whole ANSI escape sequences (CSI, OSC and the other strings, two-character escapes) and
  bidi overrides and isolates (U+202A-U+202E, U+2066-U+2069); every line break
  (``\\r\\n``, ``\\r``, U+2028, U+2029, NEL, VT, FF) becomes ``\\n``;
- ``one_line``: the same, with every line break (and tab) a space: for a value printed
  inside a line of ours, which must not be able to start a line of its own.

Both return the very string they were given when there is nothing to do (one regular
expression search), as nearly all text is.
"""

from __future__ import annotations

import re

# Anything to do at all: a control character, a line break other than \n, a bidi control.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_UNSAFE_IN_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# Escape sequences, removed whole so that their parameters do not stay behind as text:
# CSI (ESC [ or 0x9B, parameters, intermediates, final), OSC/DCS/SOS/PM/APC strings up to
# their terminator (BEL or ST), and the two-character escapes (ESC c resets the terminal).
_SEQUENCES = re.compile(
    "(?:\x1b\\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]"
    "|(?:\x1b[\\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]{0,4096}(?:\x07|\x1b\\\\|\x9c)"
    "|\x1b[\x20-\x2f]*[\x30-\x7e]"
)
_LINE_BREAKS = re.compile("\r\n|[\r\x0b\x0c\x85\u2028\u2029]")
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_ONE_LINE_BREAKS = re.compile("\r\n|[\t\n\r\x0b\x0c\x85\u2028\u2029]")


def clean(text: str) -> str:
    """``text`` without control characters and escape sequences; line breaks as ``\\n``."""
    if _UNSAFE.search(text) is None:
        return text
    text = _SEQUENCES.sub("", text)
    text = _LINE_BREAKS.sub("\n", text)
    return _CONTROLS.sub("", text)


def one_line(text: str) -> str:
    """``text`` as one line: cleaned, every line break and tab a space."""
    if _UNSAFE_IN_LINE.search(text) is None:
        return text
    text = _SEQUENCES.sub("", text)
    text = _ONE_LINE_BREAKS.sub(" ", text)
    return _CONTROLS.sub("", text)


def quote_lines(text: str, *, prefix: str = "> ") -> str:
    """``text`` cleaned, each of its lines behind ``prefix``: a value shown on lines of
    its own, none of which can pass for one of ours (none of ours starts so)."""
    return "\n".join(prefix + line for line in clean(text).split("\n"))
