"""Splitting a prompt into units a compression policy may keep or drop.

A unit is a character span of the prompt. Units cover the prompt exactly, in
order, so joining any ordered subset gives a prompt no longer than the original.
Protected units are always kept: the system prompt (a leading span the caller
names), the question (a trailing span, named or detected), fenced code blocks,
JSON objects (tool schemas) and spans the client marks. The rest is split into
sentences, each carrying its trailing whitespace so joins stay clean.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Span = tuple[int, int]
TokenCounter = Callable[[str], int]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_CODE_FENCE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_JSON_START = re.compile(r"(?:^|(?<=\s))[{\[]")
# A question is searched for only among the last few sentences, so a "?" early in
# a long document does not protect the whole document.
QUESTION_LOOKBACK = 3
MIN_JSON_CHARS = 16


@dataclass(frozen=True, slots=True)
class Unit:
    start: int
    end: int
    protected: bool
    tokens: int


@dataclass(frozen=True, slots=True)
class Layout:
    """What the policies need about a prompt: its units and its question."""

    prompt: str
    units: tuple[Unit, ...]
    question: str

    def text(self, unit: Unit) -> str:
        return self.prompt[unit.start : unit.end]

    @property
    def free(self) -> list[int]:
        return [i for i, u in enumerate(self.units) if not u.protected]

    @property
    def protected_tokens(self) -> int:
        return sum(u.tokens for u in self.units if u.protected)

    @property
    def tokens(self) -> int:
        return sum(u.tokens for u in self.units)


def whitespace_tokens(text: str) -> int:
    """Token count proxy when no tokenizer is at hand: whitespace-separated words."""
    return len(text.split())


def layout(
    prompt: str,
    count: TokenCounter = whitespace_tokens,
    system_chars: int = 0,
    question_chars: int | None = None,
    protected: Sequence[Span] = (),
) -> Layout:
    """Units of `prompt`. `question_chars=None` detects the question at the end."""
    n = len(prompt)
    question_start = n - min(question_chars, n) if question_chars is not None else _detect_question(prompt)
    spans = [(0, min(system_chars, n)), (question_start, n), *protected, *_code_blocks(prompt), *_json_blocks(prompt)]
    guarded = _merge([(max(0, s), min(n, e)) for s, e in spans if e > s])
    units = []
    cursor = 0
    for start, end in guarded:
        units += [_unit(prompt, s, e, False, count) for s, e in _sentences(prompt, cursor, start)]
        units.append(_unit(prompt, start, end, True, count))
        cursor = end
    units += [_unit(prompt, s, e, False, count) for s, e in _sentences(prompt, cursor, n)]
    return Layout(prompt, tuple(units), prompt[question_start:].strip())


def join(lay: Layout, keep: set[int]) -> str:
    """The prompt with only the kept (and every protected) unit, in original order."""
    return "".join(lay.text(u) for i, u in enumerate(lay.units) if u.protected or i in keep)


def _unit(prompt: str, start: int, end: int, protected: bool, count: TokenCounter) -> Unit:
    return Unit(start, end, protected, count(prompt[start:end]))


def _sentences(prompt: str, start: int, end: int) -> list[Span]:
    """Sentence spans covering [start, end); each ends after its trailing whitespace."""
    spans, cursor = [], start
    for match in _SENTENCE_END.finditer(prompt, start, end):
        if match.end() > cursor:
            spans.append((cursor, match.end()))
            cursor = match.end()
    if cursor < end:
        spans.append((cursor, end))
    return spans


def _detect_question(prompt: str) -> int:
    """Start of the trailing question: the last of the final sentences holding a '?'."""
    spans = _sentences(prompt, 0, len(prompt))
    if not spans:
        return 0
    tail = spans[-QUESTION_LOOKBACK:]
    asking = [s for s, e in tail if "?" in prompt[s:e]]
    return asking[-1] if asking else tail[-1][0]


def _code_blocks(prompt: str) -> list[Span]:
    return [m.span() for m in _CODE_FENCE.finditer(prompt)]


def _json_blocks(prompt: str) -> list[Span]:
    """Spans that parse as a JSON object or array (tool schemas, structured data)."""
    decoder, spans, cursor = json.JSONDecoder(), [], 0
    for match in _JSON_START.finditer(prompt):
        if match.start() < cursor:
            continue
        try:
            _, end = decoder.raw_decode(prompt, match.start())
        except ValueError:
            continue
        if end - match.start() >= MIN_JSON_CHARS:
            spans.append((match.start(), end))
            cursor = end
    return spans


def _merge(spans: list[Span]) -> list[Span]:
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def fill(lay: Layout, order: Sequence[int], budget: int) -> set[int]:
    """Free units taken in `order` while they fit `budget` tokens (protected ones count first)."""
    used, keep = lay.protected_tokens, set()
    for i in order:
        tokens = lay.units[i].tokens
        if used + tokens <= budget:
            keep.add(i)
            used += tokens
    return keep
