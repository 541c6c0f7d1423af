"""Chat templates: which tokens of a conversation carry loss (every assistant turn, tool calls included, but those with
weight 0), the token that ends an assistant turn (what generation must stop on), conversations with tool calls and tool
definitions (rendered by the template, which must show them), and the rows too long for max_length."""

from __future__ import annotations

from typing import Any

from datasets import Dataset, Features, Json, List
from transformers import PreTrainedTokenizerBase
from trl.chat_template_utils import get_training_chat_template, has_generation_markers, supports_tool_calling

# Assistant content that no template changes, to find what a template writes after it.
_PROBE = "Tuneyard end of turn probe"


class ChatTemplateError(ValueError):
    """A chat template whose assistant turns cannot be located in its output."""


def marked_template(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """A template with `{% generation %}` markers around assistant turns: TRL's training variant of a template it knows
    (Qwen, Llama 3, Gemma, Phi-3, ...), else the tokenizer's own when it has markers, else None (the turns are then
    located by rendering the conversation turn by turn, see `assistant_spans`)."""
    try:
        patched = get_training_chat_template(tokenizer)
    except ValueError:  # a template TRL has no training variant of
        patched = None
    if patched is not None:
        return patched
    return tokenizer.chat_template if has_generation_markers(tokenizer.chat_template) else None


def _runs(mask: list[int]) -> list[tuple[int, int]]:
    """[start, end) of every run of 1s."""
    runs, start = [], None
    for i, bit in enumerate([*mask, 0]):
        if bit and start is None:
            start = i
        elif not bit and start is not None:
            runs.append((start, i))
            start = None
    return runs


def _render(tokenizer, messages: list[dict[str, Any]], **kwargs: Any) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)


def assistant_spans(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict[str, Any]],
    marked: str | None,
    tools: list[dict[str, Any]] | None = None,
) -> tuple[list[int], list[tuple[int, int]]]:
    """The conversation's token ids (with the `tools` the template renders, usually in the system turn) and, for each
    assistant message in order, the [start, end) of its tokens: the content, the tool calls and what the template
    closes the turn with (the end-of-turn token)."""
    tools = tools or None  # TRL's rule: some templates (Llama 3) render a tools preamble for tools=[]
    if marked is not None:
        out = tokenizer.apply_chat_template(
            messages,
            tools=tools,
            chat_template=marked,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
        ids, spans = list(out["input_ids"]), _runs(out["assistant_masks"])
    else:
        # A turn is what rendering it adds after the conversation so far and the assistant header
        # (add_generation_prompt), mapped to tokens by their character offsets.
        text = _render(tokenizer, messages, tools=tools)
        characters = []
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            before = _render(tokenizer, messages[:i], tools=tools, add_generation_prompt=True)
            through = _render(tokenizer, messages[: i + 1], tools=tools)
            if not (through.startswith(before) and text.startswith(through)):
                raise ChatTemplateError(
                    "the chat template renders earlier turns differently once later ones follow, so the assistant "
                    "turns cannot be located; use a template with {% generation %} markers around assistant turns"
                )
            characters.append((len(before), len(through)))
        encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, starts = encoding["input_ids"], [first for first, _ in encoding["offset_mapping"]]
        spans = []
        for start, end in characters:  # a token belongs to the turn it starts in
            inside = [t for t, first in enumerate(starts) if start <= first < end]
            spans.append((inside[0], inside[-1] + 1))
    assistants = sum(message["role"] == "assistant" for message in messages)
    if len(spans) != assistants:
        raise ChatTemplateError(
            f"the chat template marks {len(spans)} assistant span(s) in a conversation of {assistants} assistant "
            "message(s); each assistant turn must be one {% generation %} block"
        )
    return ids, spans


def loss_mask(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict[str, Any]],
    marked: str | None,
    responses_only: bool,
    end_of_turn: int | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> dict[str, list[int]]:
    """`input_ids` and `assistant_masks` (1: the token carries loss) of one conversation (data.render_sft: messages
    with their tool calls and tool results, and the row's `tools`). `responses_only`: every assistant message carries
    loss, its tool calls included; otherwise every token does. Either way an assistant message with `weight` 0
    (OpenAI's fine-tuning format) carries none. Every assistant turn must hold the `end_of_turn` token id (the model
    learns to stop by being trained on it)."""
    plain = [{key: value for key, value in m.items() if key != "weight"} for m in messages]
    ids, spans = assistant_spans(tokenizer, plain, marked, tools)
    mask = [0 if responses_only else 1] * len(ids)
    assistants = [m for m in messages if m["role"] == "assistant"]
    for (start, end), message in zip(spans, assistants, strict=True):
        if end_of_turn is not None and end_of_turn not in ids[start:end]:
            raise ChatTemplateError(
                f"the template ends an assistant turn outside of it ({tokenizer.convert_ids_to_tokens(end_of_turn)} "
                "is not within the turn), so the model would never learn to stop; use a template with "
                "{% generation %} markers around the assistant content and its end-of-turn token"
            )
        mask[start:end] = [int(message.get("weight", 1) != 0)] * (end - start)
    return {"input_ids": ids, "assistant_masks": mask}


def sft_dataset(rows: list[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, responses_only: bool) -> Dataset:
    """SFT rows (data.render_sft) as TRL's SFTTrainer takes them: conversations tokenized with their loss mask (TRL
    turns it into labels, truncates and packs), `text` rows as they are (every token carries loss)."""
    if rows and "text" in rows[0]:
        return Dataset.from_list(rows)
    require_tool_support(tokenizer, rows)
    marked = marked_template(tokenizer)
    eot = end_of_turn_token(tokenizer)
    eot_id = tokenizer.convert_tokens_to_ids(eot) if eot is not None else None
    return Dataset.from_list(
        [loss_mask(tokenizer, row["messages"], marked, responses_only, eot_id, row.get("tools")) for row in rows]
    )


def preference_dataset(pairs: list[dict[str, Any]], tokenizer: PreTrainedTokenizerBase) -> Dataset:
    """Conversational preference pairs (data.render_dpo) as TRL's DPOTrainer takes them. Messages and tools are stored
    as JSON (datasets.Json): as Arrow structs every row would get the union of all rows' keys, null-filled, so a tool
    call's arguments would gain the other calls' argument names (`{"city": "Paris", "query": null}`)."""
    require_tool_support(tokenizer, [{"messages": p["prompt"] + p["chosen"] + p["rejected"], **p} for p in pairs])
    features = Features(
        {"prompt": List(Json()), "chosen": List(Json()), "rejected": List(Json()), "tools": List(Json())}
    )
    return Dataset.from_list([{**pair, "tools": pair.get("tools")} for pair in pairs], features=features)


# A conversation whose every part names itself, to see what a template renders.
_TOOL_PROBE_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "tuneyard_probe",
            "description": "tuneyard_probe_description",
            "parameters": {"type": "object", "properties": {"x": {"type": "string"}}},
        },
    }
]


def require_tool_support(tokenizer: PreTrainedTokenizerBase, rows: list[dict[str, Any]]) -> None:
    """Refuses conversations with tool calls, tool results or tool definitions that the chat template would not
    render (many templates read only `content`, so the model would be trained on turns with the calls left out):
    checked with TRL's supports_tool_calling, and for `tools` by rendering a probe."""
    calls = sum(any(m.get("tool_calls") or m["role"] == "tool" for m in row["messages"]) for row in rows)
    defined = sum(bool(row.get("tools")) for row in rows)
    if calls and not supports_tool_calling(tokenizer):
        raise ChatTemplateError(
            f"{calls} row(s) hold tool calls or tool results, but the chat template does not render them (it leaves out "
            "the call's name or arguments or the tool's result, or fails on a tool message); use a base model whose "
            "template supports tools (Qwen2.5, Llama 3.1, Mistral, ...) or drop those rows"
        )
    if defined:
        probe = [{"role": "user", "content": "Hello"}]
        try:
            text = _render(tokenizer, probe, tools=_TOOL_PROBE_TOOLS, add_generation_prompt=True)
        except Exception as err:  # a template that raises on tools (jinja2 TemplateError, ValueError...)
            text = f"(failed: {err})"
        if "tuneyard_probe_description" not in text:
            raise ChatTemplateError(
                f"{defined} row(s) define tools, but the chat template does not render tool definitions (tools=...); "
                "use a base model whose template supports tools (Qwen2.5, Llama 3.1, Mistral, ...), or drop the rows' "
                '"tools"'
            )


def _token_lengths(dataset: Dataset, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Tokens of each row as TRL's trainers lay it out: a conversation of sft_dataset (already tokenized), a `text` row
    with the eos TRL appends to it, a preference pair (data.render_dpo) as its prompt with the longer response."""
    if "input_ids" in dataset.column_names:
        return [len(ids) for ids in dataset["input_ids"]]
    if "text" in dataset.column_names:
        eos = tokenizer.eos_token
        return [len(tokenizer(text if text.endswith(eos) else text + eos)["input_ids"]) for text in dataset["text"]]

    def tokens(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> int:
        return len(tokenizer.apply_chat_template(messages, tools=tools or None, tokenize=True, return_dict=True)["input_ids"])

    return [
        max(tokens(row["prompt"] + row["chosen"], row.get("tools")), tokens(row["prompt"] + row["rejected"], row.get("tools")))
        for row in dataset
    ]


def fit_to_length(
    dataset: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int, overlong_rows: str
) -> tuple[Dataset, int]:
    """The dataset for TRL and how many of its rows are longer than `max_length` tokens. overlong_rows="drop" leaves
    them out; "truncate" keeps them for TRL to cut to their first max_length tokens, which loses the end of the
    response and the end-of-turn token a model learns to stop on (and can leave the two responses of a pair alike)."""
    lengths = _token_lengths(dataset, tokenizer)
    fits = [i for i, length in enumerate(lengths) if length <= max_length]
    overlong = len(lengths) - len(fits)
    if overlong_rows == "drop" and overlong:
        dataset = dataset.select(fits)
    return dataset, overlong


def end_of_turn_token(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """The special token the chat template closes an assistant turn with (ChatML's `<|im_end|>`, Llama 3's
    `<|eot_id|>`, Gemma's `<end_of_turn>`; often not the tokenizer's eos), or None when it closes it with none (or
    the tokenizer has no template: `text` datasets)."""
    if not tokenizer.chat_template:
        return None
    text = _render(tokenizer, [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": _PROBE}])
    if _PROBE not in text:
        return None
    after = text[text.rindex(_PROBE) + len(_PROBE) :]
    special = set(tokenizer.all_special_tokens) | set(tokenizer.get_added_vocab())
    for token in tokenizer.convert_ids_to_tokens(tokenizer(after, add_special_tokens=False)["input_ids"]):
        if token in special:
            return token
    return None


def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The ids generation stops on: the end-of-turn token, then eos (once when they are the same)."""
    eot = end_of_turn_token(tokenizer)
    ids = [tokenizer.convert_tokens_to_ids(eot)] if eot is not None else []
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids
