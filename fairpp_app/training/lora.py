"""Where LoRA goes: the attention and MLP projections, named once for both trainers.

peft and mlx-lm name a model's linear layers the way its checkpoint does, so one list
of leaf names covers both frameworks, and an MLX adapter converts to a peft one layer
for layer.
"""

from __future__ import annotations

#: Attention and MLP projections across the common architectures.
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
               "query_key_value", "c_attn", "c_proj", "c_fc", "W_pack", "fc1", "fc2",
               "dense", "dense_h_to_4h", "dense_4h_to_h", "qkv_proj", "gate_up_proj")


def is_target(module_path: str) -> bool:
    """Whether the linear layer at ``module_path`` (dotted) gets a LoRA branch."""
    return module_path.rsplit(".", 1)[-1] in PROJECTIONS
