"""The CLI's output layer: the only place that prints."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def say(message: str = "", end: str = "\n") -> None:
    sys.stdout.write(message + end)
    sys.stdout.flush()


def warn(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def printable(text: str) -> str:
    """Escape control characters (random-weight models emit them) for a terminal."""
    return "".join(c if c.isprintable() or c in "\n\t" else f"\\x{ord(c):02x}" for c in text)


def _fmt(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)
