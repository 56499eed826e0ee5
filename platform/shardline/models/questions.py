"""Real-text questions for the pretrained models, checkable offline.

Two families, seeded and generated on the fly (so nothing is downloaded and every
run asks the same items):

- `short_answers`: one-line questions whose answers a program can check: capitals,
  two-number arithmetic, and extracting a value stated in the question's own text.
  Prompts are few-shot in a `Question: ... / Answer:` form that a base model
  continues and an instruct model answers.
- `needle_in_prose`: long-context fact QA. Real English prose (Python's own language
  reference, `pydoc_data`, which ships with Python under the PSF licence) with one
  stated fact placed at a chosen depth, then a question about that fact.

`Item.answer` is the expected answer; `score` judges a completion's first line.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

CAPITALS = {
    "France": "Paris",
    "Japan": "Tokyo",
    "Italy": "Rome",
    "Germany": "Berlin",
    "Spain": "Madrid",
    "Egypt": "Cairo",
    "Russia": "Moscow",
    "China": "Beijing",
    "Greece": "Athens",
    "Portugal": "Lisbon",
    "Austria": "Vienna",
    "Ireland": "Dublin",
    "Norway": "Oslo",
    "Sweden": "Stockholm",
    "Finland": "Helsinki",
    "Poland": "Warsaw",
    "Hungary": "Budapest",
    "Kenya": "Nairobi",
    "Peru": "Lima",
    "Argentina": "Buenos Aires",
    "Thailand": "Bangkok",
    "Cuba": "Havana",
    "Denmark": "Copenhagen",
    "Belgium": "Brussels",
    "Mexico": "Mexico City",
    "Canada": "Ottawa",
    "Australia": "Canberra",
    "India": "New Delhi",
    "Turkey": "Ankara",
    "Chile": "Santiago",
    "Iran": "Tehran",
    "Vietnam": "Hanoi",
}
SHOTS = "Question: What is the capital of England?\nAnswer: London\n\nQuestion: What is 3 plus 4?\nAnswer: 7\n\n"
"""Two worked examples before every short question: the answer's form, not its content."""
NAMES = ("Alice", "Bruno", "Chen", "Dara", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas")
THINGS = ("the red box", "the blue jar", "the green bag", "the old chest", "the tin can", "the paper bag")
FACT_NOUNS = ("archive", "library", "vault", "garden", "harbour", "observatory")
TOKENS_PER_WORD = 1.45
"""Tokens per word of the language reference's prose (SmolLM2's tokenizer): a first guess."""


@dataclass(frozen=True)
class Item:
    prompt: str
    answer: str
    kind: str
    """capital, arithmetic, extraction or needle."""
    depth: float | None = None
    """For needles: where in the context the fact stands (0 = start, 1 = end)."""


def short_answers(seed: int, n: int) -> list[Item]:
    """`n` short questions, the three kinds in turn."""
    rng = random.Random(seed)
    makers = (_capital, _arithmetic, _extraction)
    return [makers[i % len(makers)](rng) for i in range(n)]


def needle_in_prose(seed: int, n: int, words: int, depths: tuple[float, ...] = (0.1, 0.5, 0.9)) -> list[Item]:
    """`n` items of about `words` words of real prose with one fact at each depth in turn."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        noun, code = rng.choice(FACT_NOUNS), str(rng.randint(1000, 9999))
        fact = f"The secret code of the {noun} is {code}."
        sentences = _prose(rng, words)
        depth = depths[i % len(depths)]
        sentences.insert(round(depth * len(sentences)), fact)
        prompt = " ".join(sentences) + f"\n\nQuestion: What is the secret code of the {noun}?\nAnswer:"
        out.append(Item(prompt, code, "needle", depth))
    return out


def needle_within(seed: int, tokens: int, depth: float, count: Callable[[str], int]) -> Item:
    """One needle item of at most `tokens` prompt tokens by `count` (a tokenizer's
    count): the words are guessed from TOKENS_PER_WORD, then cut until it fits."""
    words = int(tokens / TOKENS_PER_WORD)
    while True:
        (found,) = needle_in_prose(seed, 1, words, depths=(depth,))
        n = count(found.prompt)
        if n <= tokens:
            return found
        words = int(words * tokens / n * 0.98)


def score(item: Item, completion: str) -> bool:
    """Right when the completion's first line starts with the answer (case and
    surrounding punctuation ignored; numbers compared as numbers). For a needle, when
    the first four-digit number anywhere in it is the code: the models often restate
    the fact ("The secret code of the vault is 4821") on the line after a preamble."""
    if item.kind == "needle":
        codes = re.findall(r"(?<!\d)\d{4}(?!\d)", completion)
        return bool(codes) and codes[0] == item.answer
    line = completion.strip().split("\n", 1)[0].strip().lower()
    if item.answer.isdigit():
        numbers = re.findall(r"-?\d+", line)
        return bool(numbers) and numbers[0] == item.answer
    return re.sub(r"^[^\w]+", "", line).startswith(item.answer.lower())


def _capital(rng: random.Random) -> Item:
    country = rng.choice(sorted(CAPITALS))
    return Item(f"{SHOTS}Question: What is the capital of {country}?\nAnswer:", CAPITALS[country], "capital")


def _arithmetic(rng: random.Random) -> Item:
    a, b = rng.randint(2, 49), rng.randint(2, 49)
    return Item(f"{SHOTS}Question: What is {a} plus {b}?\nAnswer:", str(a + b), "arithmetic")


def _extraction(rng: random.Random) -> Item:
    name, thing, count = rng.choice(NAMES), rng.choice(THINGS), rng.randint(3, 19)
    other = rng.choice([t for t in THINGS if t != thing])
    text = f"{name} put {count} marbles in {thing} and {count + rng.randint(2, 9)} marbles in {other}."
    return Item(f"{SHOTS}Question: {text} How many marbles are in {thing}?\nAnswer:", str(count), "extraction")


def prose_passages(seed: int, n: int, words: int) -> list[str]:
    """`n` consecutive, non-overlapping passages of about `words` words of the language
    reference's prose, from a seeded starting topic onwards: real text to score a
    model's perplexity on, or to continue."""
    sentences = _sentences_from(random.Random(seed).randrange(len(_paragraphs())))
    return [" ".join(passage) for passage in (_take(sentences, words) for _ in range(n)) if passage]


def _prose(rng: random.Random, words: int) -> list[str]:
    """Sentences of the language reference's prose (no grammar or code lines), from a
    seeded starting topic onwards, until about `words` words."""
    return _take(_sentences_from(rng.randrange(len(_paragraphs()))), words)


def _sentences_from(start: int) -> Iterator[str]:
    """The prose's sentences from paragraph `start` on, once round."""
    paragraphs = _paragraphs()
    for i in range(len(paragraphs)):
        yield from re.split(r"(?<=[.!?])\s+", paragraphs[(start + i) % len(paragraphs)])


def _take(sentences: Iterator[str], words: int) -> list[str]:
    """The next sentences of `sentences`, until about `words` words (fewer when it ends)."""
    out, total = [], 0
    for sentence in sentences:
        out.append(sentence)
        total += len(sentence.split())
        if total >= words:
            break
    return out


@functools.cache
def _paragraphs() -> tuple[str, ...]:
    from pydoc_data.topics import topics

    out = []
    for name in sorted(topics):
        for block in topics[name].split("\n\n"):
            lines = block.split("\n")
            # Prose only: grammar rules and examples are indented, titles underlined.
            if any(line.startswith(" ") or set(line) <= set("*=-") for line in lines if line):
                continue
            text = " ".join(line.strip() for line in lines).strip()
            if len(text.split()) >= 12 and not text.startswith(("Note:", "See also", "Changed in", "Added in")):
                out.append(text)
    return tuple(out)
