"""Attention for padding-free batches when flash-attn is absent: torch's sdpa run on each sequence of the flattened
row, so attention costs what the sequences cost alone.

transformers' own `sdpa` keeps the sequences of a flattened row apart with a block-diagonal mask over the whole row:
its attention costs (sum of the lengths)^2 and, on CUDA, the mask rules out sdpa's flash kernel. Run sequence by
sequence (the boundaries are the cu_seq_lens TRL's padding-free collator passes), each call is plain causal
attention: sum of length^2, no mask, flash kernel on CUDA. Anything else (padded batches such as the evaluation's,
sliding-window or soft-capped layers, attention sinks) goes to transformers' sdpa unchanged, with the mask it builds.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

NAME = "sdpa_varlen"
# attention arguments that per-sequence causal attention does not honour
_UNSUPPORTED = ("sliding_window", "softcap", "s_aux", "position_bias")


def sdpa_varlen_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """query (1, heads, tokens, dim), key and value (1, kv heads, tokens, dim) of a flattened row; returns the
    attention output as (1, tokens, heads, dim), as every transformers attention function does."""
    cu_seq_lens = kwargs.get("cu_seq_lens_q")
    flattened = cu_seq_lens is not None and query.shape[0] == 1 and query.shape[2] == key.shape[2]
    causal = kwargs.get("is_causal")
    causal = getattr(module, "is_causal", True) if causal is None else causal
    plain = causal and all(kwargs.get(name) is None for name in _UNSUPPORTED)
    if not (flattened and plain):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    bounds = cu_seq_lens.tolist()
    gqa = query.shape[1] != key.shape[1]
    output = torch.cat(
        [
            torch.nn.functional.scaled_dot_product_attention(
                query[:, :, start:end], key[:, :, start:end], value[:, :, start:end],
                dropout_p=dropout, scale=scaling, is_causal=True, enable_gqa=gqa,
            )
            for start, end in zip(bounds[:-1], bounds[1:])
            if end > start
        ],
        dim=2,
    )
    return output.transpose(1, 2).contiguous(), None


def register() -> str:
    """Makes `attn_implementation=NAME` loadable (the mask is sdpa's: what the fallback uses)."""
    AttentionInterface.register(NAME, sdpa_varlen_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME
