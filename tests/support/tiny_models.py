"""Tiny random causal LMs with a real tokenizer, saved as Hugging Face folders.

Tests of the transformers backend, the trainers and the mlx backend need a model folder
that loads in a second and behaves like a real one: a byte-level BPE tokenizer trained
here on the question bank's wording (so prompts tokenise into words, not bytes), with
BOS/EOS/PAD and single tokens for "A", "B", "C", " A", " B", " C"; and a two-layer model
with random weights, initialised wide enough that next-token distributions are not flat.

The weights are drawn with numpy and written with ``safetensors.numpy`` under the names
transformers gives them, and the config by transformers' config class (which needs no
torch): the mlx backend is tested on a Mac without torch, and transformers loads the
same folder.

    from tests.support.tiny_models import build_tiny_model
    path = build_tiny_model(tmp_path / "tiny")                   # Llama
    path = build_tiny_model(tmp_path / "g", arch="gemma3", sliding_window=8, softcap=2.0)

Nothing here touches the network or the fairpp data directory.
"""

from __future__ import annotations

from functools import cache, lru_cache
from pathlib import Path

from fairpp_app.core.personas import builtin_personas
from fairpp_app.core.prompts import TEMPLATE, build_prompt
from fairpp_app.core.questions import build_bank

SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>")
LETTER_SPELLINGS = ("A", "B", "C", " A", " B", " C")

#: A minimal chat template in the style of most instruct models: BOS, turns, and an open
#: assistant turn when a generation prompt is asked for.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")

#: A template that, like Gemma's and Mistral's older ones, refuses a system turn.
NO_SYSTEM_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def corpus(n_questions: int = 2000) -> list[str]:
    """Question wording from the bank plus the prompt template and answer lines."""
    from fairpp_app.core.questions import build_bank

    texts = []
    for q in build_bank()[:n_questions]:
        texts.append(TEMPLATE["question"].format(text=q.text, a=q.option_a, b=q.option_b,
                                                 c=q.option_c))
    texts.extend(str(v) for v in TEMPLATE.values() if isinstance(v, str))
    # Enough "Answer: A" lines that BPE merges " A", " B" and " C" into single tokens.
    texts.extend(f"Answer: {letter}" for letter in "ABC" for _ in range(200))
    return texts


@lru_cache(maxsize=4)
def _trained_tokenizer_json(vocab_size: int, n_questions: int) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from tokenizers.processors import TemplateProcessing

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus(n_questions), trainer)
    bos = tok.token_to_id("<bos>")
    tok.post_processor = TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", bos)])
    return tok.to_str()


def train_tokenizer(vocab_size: int = 1000, n_questions: int = 2000):
    """A PreTrainedTokenizerFast that prepends BOS, pads on the left, and knows A/B/C."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer.from_str(_trained_tokenizer_json(vocab_size, n_questions))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<bos>",
                                        eos_token="<eos>", pad_token="<pad>",
                                        unk_token="<unk>", padding_side="left")
    for spelling in LETTER_SPELLINGS:
        ids = tokenizer.encode(spelling, add_special_tokens=False)
        assert len(ids) == 1, f"{spelling!r} is not a single token: {ids}"
    return tokenizer


def tiny_config(tokenizer, arch: str = "llama", *, hidden: int = 32, layers: int = 2,
                sliding_window: int | None = None, softcap: float | None = None,
                init_range: float = 0.3):
    common = {"vocab_size": len(tokenizer), "hidden_size": hidden,
              "intermediate_size": 2 * hidden, "num_hidden_layers": layers,
              "num_attention_heads": 4, "num_key_value_heads": 2,
              "max_position_embeddings": 2048, "initializer_range": init_range,
              "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
              "pad_token_id": tokenizer.pad_token_id, "tie_word_embeddings": True}
    if arch == "llama":
        from transformers import LlamaConfig

        return LlamaConfig(**common)
    if arch == "gemma3":
        from transformers import Gemma3TextConfig

        kinds = ["sliding_attention", "full_attention"]
        return Gemma3TextConfig(**common, head_dim=hidden // 4, query_pre_attn_scalar=hidden // 4,
                                sliding_window=sliding_window or 512,
                                layer_types=[kinds[i % 2] for i in range(layers)],
                                final_logit_softcapping=softcap)
    raise ValueError(f"unknown tiny arch {arch!r}")


_ARCHITECTURES = {"llama": "LlamaForCausalLM", "gemma3": "Gemma3ForCausalLM"}


def tiny_weights(config, arch: str, seed: int = 0) -> dict:
    """Random weights for ``config``, named and initialised as transformers does: linear and
    embedding weights ~ N(0, initializer_range), RMS norms at their identity (ones for
    Llama, zeros for Gemma's ``1 + w``), the padding token's embedding zero; the output
    head is tied to the embedding."""
    import numpy as np

    rng = np.random.default_rng(seed)
    hidden, inter = config.hidden_size, config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or hidden // config.num_attention_heads
    q_width = config.num_attention_heads * head_dim
    kv_width = config.num_key_value_heads * head_dim
    std = config.initializer_range

    def normal(*shape):
        return rng.normal(0.0, std, size=shape).astype(np.float32)

    def norm(n):
        return (np.zeros if arch == "gemma3" else np.ones)(n, dtype=np.float32)

    embed = normal(config.vocab_size, hidden)
    if config.pad_token_id is not None:
        embed[config.pad_token_id] = 0.0
    weights = {"model.embed_tokens.weight": embed, "model.norm.weight": norm(hidden)}
    for i in range(config.num_hidden_layers):
        layer = f"model.layers.{i}."
        weights.update({
            layer + "self_attn.q_proj.weight": normal(q_width, hidden),
            layer + "self_attn.k_proj.weight": normal(kv_width, hidden),
            layer + "self_attn.v_proj.weight": normal(kv_width, hidden),
            layer + "self_attn.o_proj.weight": normal(hidden, q_width),
            layer + "mlp.gate_proj.weight": normal(inter, hidden),
            layer + "mlp.up_proj.weight": normal(inter, hidden),
            layer + "mlp.down_proj.weight": normal(hidden, inter),
            layer + "input_layernorm.weight": norm(hidden),
            layer + "post_attention_layernorm.weight": norm(hidden),
        })
        if arch == "gemma3":
            weights.update({
                layer + "pre_feedforward_layernorm.weight": norm(hidden),
                layer + "post_feedforward_layernorm.weight": norm(hidden),
                layer + "self_attn.q_norm.weight": norm(head_dim),
                layer + "self_attn.k_norm.weight": norm(head_dim),
            })
    return weights


def build_tiny_model(out_dir: Path, arch: str = "llama", *, chat_template: str | None = None,
                     seed: int = 0, **config_options) -> Path:
    """Save a tiny random model and its tokenizer to ``out_dir``; returns ``out_dir``.

    Needs numpy, safetensors, tokenizers and transformers, not torch."""
    from safetensors.numpy import save_file
    from transformers import GenerationConfig

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer()
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    config = tiny_config(tokenizer, arch, **config_options)
    config.architectures = [_ARCHITECTURES[arch]]
    config.dtype = "float32"
    config.save_pretrained(out_dir)
    generation = GenerationConfig.from_model_config(config)
    generation.pad_token_id = tokenizer.pad_token_id
    generation.save_pretrained(out_dir)
    save_file(tiny_weights(config, arch, seed), str(out_dir / "model.safetensors"),
              metadata={"format": "pt"})
    tokenizer.save_pretrained(out_dir)
    return out_dir


@cache
def split_questions(n: int) -> tuple:
    """The first ``n`` test-split questions of the bank."""
    return tuple(q for q in build_bank() if q.split == "test")[:n]


def mixed_prompts(n_questions: int = 3) -> list:
    """Prompts of different lengths: two personas and the bare model, persona-major, as the
    engine orders them."""
    personas = builtin_personas()
    return [build_prompt(q, persona) for persona in (personas[0], personas[5], None)
            for q in split_questions(n_questions)]
