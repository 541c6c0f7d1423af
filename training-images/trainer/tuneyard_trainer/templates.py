"""Named chat templates for base models whose tokenizer has none (config chat_template): the template, its special
tokens added to the tokenizer, the embeddings resized for them, and the rows of those tokens trained."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from peft.utils.other import TrainableTokensWrapper
from tokenizers import AddedToken
from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class NamedTemplate:
    template: str
    special_tokens: tuple[str, ...]
    end_of_turn: str


# ChatML (OpenAI's, Qwen's and many fine-tunes'): no default system prompt, and a turn rendered alone reads the same
# as inside a longer conversation, so chat.assistant_spans finds each assistant turn with its <|im_end|>. Content
# that is not a string renders empty. Tools as Qwen2.5 and Hermes write them (what vLLM's hermes tool parser reads):
# the definitions in a system turn of their own, each call in the assistant turn as <tool_call> JSON </tool_call>
# (arguments as an object), each result as a `tool` turn.
CHATML = NamedTemplate(
    template=(
        "{%- if tools %}"
        "{{- '<|im_start|>system\n# Tools\n\nYou may call one or more functions. Their signatures, within <tools></tools>:"
        "\n<tools>' }}"
        "{%- for tool in tools %}{{- '\n' + (tool | tojson) }}{%- endfor %}"
        "{{- '\n</tools>\n\nFor each call, return a JSON object with the function name and arguments within "
        "<tool_call></tool_call>:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n"
        "</tool_call><|im_end|>\n' }}"
        "{%- endif %}"
        "{%- for message in messages %}"
        "{{- '<|im_start|>' + message['role'] + '\n' }}"
        "{%- if message['content'] is string %}{{- message['content'] }}{%- endif %}"
        "{%- for call in message['tool_calls'] or [] %}"
        "{%- set call = call['function'] if call['function'] is defined else call %}"
        "{{- ('\n' if not loop.first or message['content'] else '') + '<tool_call>\n{\"name\": \"' + call['name'] "
        "+ '\", \"arguments\": ' + (call['arguments'] | tojson) + '}\n</tool_call>' }}"
        "{%- endfor %}"
        "{{- '<|im_end|>\n' }}"
        "{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
    ),
    special_tokens=("<|im_start|>", "<|im_end|>"),
    end_of_turn="<|im_end|>",
)
TEMPLATES = {"chatml": CHATML}


def apply(tokenizer: PreTrainedTokenizerBase, name: str) -> bool:
    """Gives a tokenizer without a chat template the named one, its special tokens added (special: never split, and
    skipped when decoding with skip_special_tokens). A tokenizer with its own template keeps it. True when applied."""
    if tokenizer.chat_template:
        return False
    named = TEMPLATES[name]
    tokens = [AddedToken(t, special=True, normalized=False) for t in named.special_tokens]
    tokenizer.add_tokens(tokens, special_tokens=True)
    tokenizer.chat_template = named.template
    return True


def template_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The ids of the special tokens of the named template the tokenizer carries ([] for any other template): rows of
    the embeddings that the base model never trained, so they must be trained."""
    for named in TEMPLATES.values():
        if tokenizer.chat_template == named.template:
            return tokenizer.convert_tokens_to_ids(list(named.special_tokens))
    return []


def fit_embeddings(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase) -> bool:
    """Resizes the input embeddings (and an untied output head) to the tokenizer when it holds more tokens than they
    have rows (new rows: transformers' mean resizing, the mean and covariance of the old rows). True when resized."""
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) <= rows:
        return False
    model.resize_token_embeddings(len(tokenizer))
    return True


def trainable_token_indices(
    model: torch.nn.Module, token_ids: list[int], modules_to_save: list[str] | None
) -> dict[str, list[int]] | None:
    """PEFT's trainable_token_indices for new tokens: their rows of the input embeddings and of an untied output head,
    trained and saved with the adapter. The head's rows matter most: mean-initialised, a new token's head row is the
    average of all rows, which no hidden state can single out, so without training them the model never learns to
    predict the token (the end of turn above all). A tied head shares the embeddings' rows (PEFT ties the two); a
    module trained whole (modules_to_save) needs none; a head with a bias is left out (PEFT's trainable-tokens layer
    drops a Linear's bias)."""
    if not token_ids:
        return None
    names = {id(module): name.rsplit(".", 1)[-1] for name, module in model.named_modules()}
    embeddings, head = model.get_input_embeddings(), model.get_output_embeddings()
    modules = [embeddings]
    if head is not None and head.weight is not embeddings.weight and getattr(head, "bias", None) is None:
        modules.append(head)
    whole = set(modules_to_save or [])
    indices = {names[id(m)]: list(token_ids) for m in modules if names[id(m)] not in whole}
    return indices or None


def fused_head_compatible(model: torch.nn.Module) -> None:
    """TRL 1.16's trainers compute the loss with a fused LM head that reads the output head's `weight` and `bias`.
    PEFT's trainable-tokens wrapper gives `weight` with the trained rows in place (so their gradients flow) but no
    `bias`; the heads it wraps here have none (trainable_token_indices), so it says so."""
    for module in model.modules():
        if isinstance(module, TrainableTokensWrapper) and isinstance(module.original_module, torch.nn.Linear):
            module.bias = None
