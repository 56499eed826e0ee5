"""Tiny local models in Hugging Face format: a Llama and a Mixtral-style MoE.

No model hub is reachable, so tests and the demo build their own. Weights come
from a seeded generator and are written with safetensors; the BPE tokenizer is
trained with `tokenizers` on `corpus/tokenizer.txt`. Tensors, config.json and the
tokenizer are written directly (not through transformers' save_pretrained), so a
rebuild is byte-identical whatever the transformers version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from shardline.models.cache import build_atomically, is_built

RECIPE_VERSION = 1
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]


@dataclass(frozen=True)
class TinyRecipe:
    """Architecture of one tiny model; every field lands in config.json."""

    name: str
    architecture: str
    seed: int
    vocab_size: int = 512
    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    num_key_value_heads: int = 2
    max_position_embeddings: int = 16384
    num_local_experts: int = 0
    num_experts_per_tok: int = 0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


TINY_LLAMA = TinyRecipe(name="tiny-llama", architecture="LlamaForCausalLM", seed=1234)
TINY_MIXTRAL = TinyRecipe(
    name="tiny-mixtral",
    architecture="MixtralForCausalLM",
    seed=5678,
    num_local_experts=4,
    num_experts_per_tok=2,
)
RECIPES = (TINY_LLAMA, TINY_MIXTRAL)


def build_tiny_models(directory: str | Path, force: bool = False) -> list[Path]:
    """Write every tiny model under `directory`; skip those already built."""
    out = []
    for recipe in RECIPES:
        target = Path(directory) / recipe.name
        if force or not is_built(target, _fingerprint(recipe)):
            build_atomically(target, _fingerprint(recipe), lambda staging, r=recipe: write_model(r, staging))
        out.append(target)
    return out


def write_model(recipe: TinyRecipe, directory: Path) -> None:
    tokenizer = train_tokenizer(recipe.vocab_size)
    tokenizer.save(str(directory / "tokenizer.json"))
    write_json(directory / "tokenizer_config.json", tokenizer_config(recipe))
    write_json(directory / "config.json", hf_config(recipe, tokenizer))
    save_file(init_weights(recipe), str(directory / "model.safetensors"), {"format": "pt"})


def train_tokenizer(vocab_size: int) -> Tokenizer:
    """Byte-level BPE: any UTF-8 text encodes, so no prompt ever hits <unk>."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus().splitlines(), trainer=trainer)
    bos = tokenizer.token_to_id("<s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    return tokenizer


def hf_config(recipe: TinyRecipe, tokenizer: Tokenizer) -> dict:
    config = {
        "architectures": [recipe.architecture],
        "model_type": "mixtral" if recipe.num_local_experts else "llama",
        "vocab_size": recipe.vocab_size,
        "hidden_size": recipe.hidden_size,
        "intermediate_size": recipe.intermediate_size,
        "num_hidden_layers": recipe.num_hidden_layers,
        "num_attention_heads": recipe.num_attention_heads,
        "num_key_value_heads": recipe.num_key_value_heads,
        "head_dim": recipe.head_dim,
        "max_position_embeddings": recipe.max_position_embeddings,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "bos_token_id": tokenizer.token_to_id("<s>"),
        "eos_token_id": tokenizer.token_to_id("</s>"),
        "pad_token_id": tokenizer.token_to_id("<pad>"),
    }
    if recipe.num_local_experts:
        config["num_local_experts"] = recipe.num_local_experts
        config["num_experts_per_tok"] = recipe.num_experts_per_tok
        config["router_aux_loss_coef"] = 0.0
    return config


def init_weights(recipe: TinyRecipe) -> dict[str, torch.Tensor]:
    """Seeded N(0, 0.02) matrices and unit norms, under the HF parameter names."""
    gen = torch.Generator().manual_seed(recipe.seed)
    h, v, d = recipe.hidden_size, recipe.vocab_size, recipe.head_dim
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, h)}
    for layer in range(recipe.num_hidden_layers):
        p = f"model.layers.{layer}."
        shapes |= {
            p + "input_layernorm.weight": (h,),
            p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (recipe.num_attention_heads * d, h),
            p + "self_attn.k_proj.weight": (recipe.num_key_value_heads * d, h),
            p + "self_attn.v_proj.weight": (recipe.num_key_value_heads * d, h),
            p + "self_attn.o_proj.weight": (h, recipe.num_attention_heads * d),
        }
        shapes |= _mlp_shapes(recipe, p)
    shapes |= {"model.norm.weight": (h,), "lm_head.weight": (v, h)}
    return {
        name: torch.ones(shape) if len(shape) == 1 else torch.randn(shape, generator=gen) * 0.02
        for name, shape in shapes.items()
    }


def _mlp_shapes(recipe: TinyRecipe, prefix: str) -> dict[str, tuple[int, ...]]:
    h, i = recipe.hidden_size, recipe.intermediate_size
    if not recipe.num_local_experts:
        return {
            prefix + "mlp.gate_proj.weight": (i, h),
            prefix + "mlp.up_proj.weight": (i, h),
            prefix + "mlp.down_proj.weight": (h, i),
        }
    moe = prefix + "block_sparse_moe."
    shapes = {moe + "gate.weight": (recipe.num_local_experts, h)}
    for e in range(recipe.num_local_experts):
        shapes |= {
            f"{moe}experts.{e}.w1.weight": (i, h),
            f"{moe}experts.{e}.w2.weight": (h, i),
            f"{moe}experts.{e}.w3.weight": (i, h),
        }
    return shapes


def tokenizer_config(recipe: TinyRecipe) -> dict:
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "model_max_length": recipe.max_position_embeddings,
        "clean_up_tokenization_spaces": False,
    }


def _corpus() -> str:
    return resources.files("shardline.models").joinpath("corpus/tokenizer.txt").read_text()


def _fingerprint(recipe: TinyRecipe) -> dict:
    corpus_sha = hashlib.sha256(_corpus().encode()).hexdigest()
    return {"recipe_version": RECIPE_VERSION, "recipe": asdict(recipe), "corpus_sha256": corpus_sha}


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
