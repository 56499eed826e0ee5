"""Accuracy of served models on the retrieval task, through the real gRPC path.

    shardline eval --target localhost:50051 --model kv-small --model kv-large

Each item goes client -> router -> replica -> vLLM as a greedy request; `tasks.score`
judges the answer. Reports accuracy per model and context length, and tokens/s.
"""

from __future__ import annotations

import functools
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from shardline.client import Client
from shardline.models import tasks

# Greedy, four digits and </s> with room for a wrong, longer answer.
ANSWER_SAMPLING = {"max_tokens": 8, "temperature": 0.0}


@dataclass(frozen=True)
class Cell:
    model: str
    context_words: int
    items: int
    correct: int
    completion_tokens: int
    seconds: float

    @property
    def accuracy(self) -> float:
        return self.correct / self.items

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.seconds

    def as_dict(self) -> dict:
        return {**asdict(self), "accuracy": round(self.accuracy, 3), "tokens_per_s": round(self.tokens_per_s, 1)}


def evaluate(
    target: str, models: list[str], lengths: list[int], items: int, seed: int = 0, concurrency: int = 8
) -> list[Cell]:
    cells = []
    with Client(target) as client, ThreadPoolExecutor(concurrency) as pool:
        for model in models:
            for length in lengths:
                batch = tasks.items_for_length(seed + length, items, length)
                start = time.perf_counter()
                replies = list(pool.map(functools.partial(ask, client, model), batch))
                seconds = time.perf_counter() - start
                correct = sum(tasks.score(item, reply.text) for item, reply in zip(batch, replies))
                tokens = sum(reply.usage.completion_tokens for reply in replies)
                cells.append(Cell(model, length, items, correct, tokens, seconds))
    return cells


def ask(client: Client, model: str, item: tasks.Item):
    """Greedy completion of one item."""
    return client.generate(model, item.prompt, timeout=120, **ANSWER_SAMPLING)
