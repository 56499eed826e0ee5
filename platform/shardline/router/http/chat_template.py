"""Chat messages -> one prompt string, with the served model's own chat template.

The template is the tokenizer's (`chat_template` in the model directory's
tokenizer files, rendered by transformers exactly as the model was trained to
read it). A model without one (the tiny models in models/trained) gets a plain
fallback, one `Role: content` line per message and a final `Assistant:` cue:

    System: You are terse.
    User: What is 2+2?
    Assistant:

A cascade renders with its first tier's template: every tier of a cascade is
asked the same prompt.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable

from shardline.errors import InvalidArgument
from shardline.spec.deployment import DeploymentSpec

logger = logging.getLogger(__name__)

Messages = list[dict[str, str]]
TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
ROLES = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant"}


def render(spec: DeploymentSpec, model: str, messages: Messages) -> str:
    """The prompt for `messages` to `model` (a served model or a cascade)."""
    cascade = spec.policies.cascade(model)
    served = spec.model(cascade.tiers[0] if cascade else model)
    template = tokenizer_template(served.path) if served else None
    try:
        return template(messages) if template else fallback(messages)
    except Exception as exc:  # a template that rejects these messages (e.g. roles out of order)
        raise InvalidArgument(f"messages do not fit the chat template of {served.name!r}: {exc}") from None


def fallback(messages: Messages) -> str:
    lines = [f"{ROLES[m['role']]}: {m['content']}" for m in messages]
    return "\n".join(lines + ["Assistant:"])


@functools.cache
def tokenizer_template(path: str) -> Callable[[Messages], str] | None:
    """The tokenizer's template as a function, or None when the model has none."""
    if not _has_template(path):
        return None
    from transformers import AutoTokenizer  # heavy import: only for models that may have a template

    tokenizer = AutoTokenizer.from_pretrained(path)
    if not getattr(tokenizer, "chat_template", None):
        logger.info("model at %s has no chat template; using the plain fallback", path)
        return None
    return lambda messages: tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _has_template(path: str) -> bool:
    """Cheap check first: transformers takes seconds to import, and most small models have no template."""
    if any(os.path.isfile(os.path.join(path, name)) for name in TEMPLATE_FILES):
        return True
    config = os.path.join(path, "tokenizer_config.json")
    if not os.path.isfile(config):
        return False
    with open(config, encoding="utf-8") as f:
        return bool(json.load(f).get("chat_template"))
