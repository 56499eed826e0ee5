"""A checkable task family for tiny models: key-value retrieval in filler text.

    The code of amber is 4 8 2 1 . the river runs past the old mill . ...
    Question : what is the code of amber ? Answer : 4 8 2 1

Items are seeded and generated on the fly; `score` says whether an answer is
right. Codes are written digit by digit so a word-level tokenizer gives one token
per digit and the model learns to copy, not to memorize numbers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

KEYS = (
    "amber azure beige black blue bronze brown cobalt copper coral cream crimson cyan "
    "ebony emerald gold gray green indigo ivory jade khaki lemon lilac lime magenta "
    "maroon mauve mint navy ochre olive onyx orange peach pearl pink plum purple red "
    "rose ruby rust saffron salmon sand scarlet sepia silver slate tan teal violet white"
).split()
FILLER_WORDS = (
    "the a river runs past old mill wind blows over hills children play in fields "
    "baker sells warm bread by harbour boats sail out at dawn and come back dusk "
    "birds sing trees sway rain falls on roofs lamps glow streets are quiet night "
    "market opens early farmers bring fruit cheese honey dogs bark cats sleep sun"
).split()
TEMPLATE_WORDS = ["The", "code", "of", "is", "Question", "what", "Answer", ".", "?", ":"]
DIGITS = [str(d) for d in range(10)]
CODE_DIGITS = 4


@dataclass(frozen=True)
class Item:
    prompt: str
    answer: str
    facts: int


def vocabulary() -> list[str]:
    """Every word the task can produce, in a fixed order (the tokenizer's vocab)."""
    return TEMPLATE_WORDS + DIGITS + KEYS + sorted(set(FILLER_WORDS) - set(TEMPLATE_WORDS))


def make_item(rng: random.Random, facts: int, filler_sentences: int) -> Item:
    keys = rng.sample(KEYS, facts)
    codes = {k: " ".join(rng.choice(DIGITS) for _ in range(CODE_DIGITS)) for k in keys}
    sentences = [f"The code of {k} is {codes[k]} ." for k in keys]
    sentences += [_filler(rng) for _ in range(filler_sentences)]
    rng.shuffle(sentences)
    target = rng.choice(keys)
    prompt = " ".join(sentences) + f" Question : what is the code of {target} ? Answer :"
    return Item(prompt=prompt, answer=codes[target], facts=facts)


def items_for_length(seed: int, n: int, approx_words: int) -> list[Item]:
    """`n` items whose prompts have about `approx_words` words (~ tokens)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        facts = max(2, min(len(KEYS), approx_words // 40))
        filler = max(0, (approx_words - facts * 9 - 12) // 8)
        out.append(make_item(rng, facts, filler))
    return out


def score(item: Item, completion: str) -> bool:
    """Right when the first CODE_DIGITS digits of the completion are the code."""
    digits = [c for c in completion if c.isdigit()][:CODE_DIGITS]
    return "".join(digits) == item.answer.replace(" ", "")


def _filler(rng: random.Random) -> str:
    return " ".join(rng.choice(FILLER_WORDS) for _ in range(rng.randint(4, 9))) + " ."
