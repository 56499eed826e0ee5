"""Trains the tiny tiers on the retrieval task (tasks.py), on CPU, seeded.

    shardline models train-tiny models/trained

Each tier is a Hugging Face Llama / Mixtral trained with PyTorch (transformers'
modelling code), loss on the answer tokens only, on contexts of 32 to
`warmup_words` words for the first half of the steps and up to
`max_train_words` after. The result is written in the same layout as the
random-weight tiny models (config.json, model.safetensors, tokenizer) so vLLM
loads it offline, plus a manifest of sha256 hashes and the training command.
"""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

from shardline.models import tasks
from shardline.models.tiny import SPECIAL_TOKENS, TinyRecipe, hf_config, tokenizer_config, write_json

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Tier:
    name: str
    layers: int
    hidden: int
    heads: int
    steps: int
    experts: int = 0
    seed: int = 0
    batch: int = 16
    lr: float = 1e-3
    min_train_words: int = 32
    warmup_words: int = 96
    """Contexts stay this short for the first half of training: the copy circuit
    forms there, and then generalizes to the longer contexts of the second half."""
    max_train_words: int = 256


# Two tiers of one family (cheap/often wrong vs slower/accurate) and a
# Mixtral-style MoE for the expert-parallel work.
TIERS = (
    Tier("kv-small", layers=2, hidden=64, heads=2, steps=2000, seed=11),
    Tier("kv-large", layers=4, hidden=128, heads=4, steps=6000, seed=12, max_train_words=320),
    Tier("kv-moe", layers=2, hidden=128, heads=4, steps=3000, experts=4, seed=13),
)


def build_tokenizer() -> Tokenizer:
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + tasks.vocabulary())}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.add_special_tokens(SPECIAL_TOKENS)  # ids unchanged; decode skips them
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(), pre_tokenizers.Digits(individual_digits=True)]
    )
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    return tokenizer


def recipe_of(tier: Tier, tokenizer: Tokenizer) -> TinyRecipe:
    return TinyRecipe(
        name=tier.name,
        architecture="MixtralForCausalLM" if tier.experts else "LlamaForCausalLM",
        seed=tier.seed,
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=tier.hidden,
        intermediate_size=tier.hidden * 4,
        num_hidden_layers=tier.layers,
        num_attention_heads=tier.heads,
        num_key_value_heads=tier.heads,
        num_local_experts=tier.experts,
        num_experts_per_tok=2 if tier.experts else 0,
    )


def make_model(tier: Tier, config: dict) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(tier.seed)
    cfg = AutoConfig.for_model(**{k: v for k, v in config.items() if k != "architectures"})
    cfg._attn_implementation = "sdpa"
    return AutoModelForCausalLM.from_config(cfg)


def batch_of(tokenizer: Tokenizer, rng: random.Random, tier: Tier, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and labels (-100 except on the answer and </s>)."""
    longest = tier.warmup_words if step < tier.steps // 2 else tier.max_train_words
    words = rng.randint(tier.min_train_words, longest)
    eos, pad = tokenizer.token_to_id("</s>"), tokenizer.token_to_id("<pad>")
    rows, labels = [], []
    for _ in range(tier.batch):
        item = tasks.items_for_length(rng.randrange(1 << 30), 1, words)[0]
        prompt = tokenizer.encode(item.prompt).ids
        answer = tokenizer.encode(item.answer, add_special_tokens=False).ids + [eos]
        rows.append(prompt + answer)
        labels.append([-100] * len(prompt) + answer)
    width = max(map(len, rows))
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    lab = torch.tensor([r + [-100] * (width - len(r)) for r in labels])
    return ids, lab


def train_tier(tier: Tier, log=print) -> tuple[torch.nn.Module, Tokenizer, dict, float]:
    tokenizer = build_tokenizer()
    config = hf_config(recipe_of(tier, tokenizer), tokenizer)
    model = make_model(tier, config)
    rng = random.Random(tier.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=tier.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=tier.lr, total_steps=tier.steps, pct_start=0.1)
    start = time.perf_counter()
    model.train()
    for step in range(tier.steps):
        ids, labels = batch_of(tokenizer, rng, tier, step)
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == tier.steps - 1:
            log(f"{tier.name} step {step:4d} loss {loss.item():.3f} ({time.perf_counter() - start:.0f} s)")
    return model, tokenizer, config, time.perf_counter() - start


def vllm_state_dict(model: torch.nn.Module, tier: Tier) -> dict[str, torch.Tensor]:
    """HF parameter names vLLM's loaders expect (per-expert w1/w2/w3 for Mixtral)."""
    out = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().contiguous().clone()
        if ".mlp.experts." in name and tensor.dim() == 3:  # fused expert tensors
            prefix = name.split(".mlp.experts.")[0] + ".block_sparse_moe.experts."
            for e in range(tensor.shape[0]):
                if name.endswith("gate_up_proj"):
                    gate, up = tensor[e].chunk(2, dim=0)
                    out[f"{prefix}{e}.w1.weight"], out[f"{prefix}{e}.w3.weight"] = gate.contiguous(), up.contiguous()
                else:
                    out[f"{prefix}{e}.w2.weight"] = tensor[e].contiguous()
        elif ".mlp.gate." in name and tier.experts:
            out[name.replace(".mlp.gate.", ".block_sparse_moe.gate.")] = tensor
        else:
            out[name] = tensor
    return out


def save_tier(directory: Path, tier: Tier, model, tokenizer: Tokenizer, config: dict, seconds: float) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    write_json(directory / "tokenizer_config.json", tokenizer_config(recipe_of(tier, tokenizer)))
    write_json(directory / "config.json", config)
    save_file(vllm_state_dict(model, tier), str(directory / "model.safetensors"), {"format": "pt"})
    manifest = {
        "tier": asdict(tier),
        "train_seconds": round(seconds, 1),
        "command": "shardline models train-tiny models/trained",
        "files": {p.name: sha256(p) for p in sorted(directory.iterdir()) if p.name != MANIFEST},
    }
    write_json(directory / MANIFEST, manifest)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train_all(directory: str | Path, names: list[str] | None = None, log=print) -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for tier in TIERS:
        if names and tier.name not in names:
            continue
        model, tokenizer, config, seconds = train_tier(tier, log)
        save_tier(Path(directory) / tier.name, tier, model, tokenizer, config, seconds)
        log(f"{tier.name}: trained in {seconds:.0f} s")
