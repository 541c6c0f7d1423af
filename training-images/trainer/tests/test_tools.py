"""Tool calling in OpenAI's chat format: rows with tool definitions, assistant tool calls (arguments given as JSON
strings) and tool results are rendered by the tokenizer's chat template, whose tokens then hold each call's name and
arguments (as an object) and each result; every assistant turn carries loss, tool-call turns included, but those with
weight 0, which contribute none; and a tiny model trained on tool calls gets better at held-out ones. Two templates:
Qwen2.5's (TRL has a training variant with {% generation %} markers) and a ChatML one with tools written here (no
markers: turns found by rendering turn by turn)."""

import json

import pytest
import torch
from conftest import FAST, FIXTURES, Job, build_chatml_tokenizer, build_model
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl.chat_template_utils import qwen2_5_chat_template

from tuneyard_trainer import templates, train
from tuneyard_trainer.chat import (
    ChatTemplateError,
    assistant_spans,
    marked_template,
    preference_dataset,
    sft_dataset,
)
from tuneyard_trainer.data import render_dpo, render_sft, validate_file
from tuneyard_trainer.evaluate import mean_loss
from tuneyard_trainer.sagemaker_env import SageMakerEnv

# ChatML with a tools block, tool calls as Qwen writes them and tool results as their own turns.
CHATML_TOOLS = (
    "{%- if tools %}<|im_start|>system\n# Tools\n{%- for tool in tools %}\n{{ tool['function'] | tojson }}{%- endfor %}"
    "<|im_end|>\n{%- endif %}"
    "{%- for m in messages %}"
    "{%- if m['role'] == 'assistant' %}<|im_start|>assistant\n{%- if m['content'] %}{{ m['content'] }}{%- endif %}"
    "{%- for call in m['tool_calls'] or [] %}"
    '<tool_call>{"name": "{{ call["function"]["name"] }}", "arguments": {{ call["function"]["arguments"] | tojson }}}'
    "</tool_call>{%- endfor %}<|im_end|>\n"
    "{%- else %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
)
TEMPLATES = {"qwen2.5": qwen2_5_chat_template, "chatml-tools": CHATML_TOOLS}

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module", params=list(TEMPLATES))
def tool_model(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    build_model(folder, build_chatml_tokenizer(folder, TEMPLATES[request.param]))
    return folder


def mask_runs(tokenizer, row: dict) -> list[str]:
    """The text of each run of tokens that carry loss."""
    runs, current = [], []
    for token, bit in zip(row["input_ids"], row["assistant_masks"]):
        if bit:
            current.append(token)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    if current:
        runs.append(tokenizer.decode(current))
    return runs


def test_the_rendered_tokens_hold_tools_calls_with_object_arguments_and_results(tool_model):
    # GIVEN the corpus' OpenAI chat rows (arguments as JSON strings), validated and rendered as the trainer does
    tokenizer = AutoTokenizer.from_pretrained(tool_model)
    rows = render_sft(validate_file(FIXTURES / "openai-chat.jsonl", "sft").rows, "chat")
    # WHEN tokenized with their loss masks
    dataset = sft_dataset(rows, tokenizer, responses_only=True)
    # THEN the first row's tokens hold the tool definition, the call (its arguments an object) and the result
    first = dataset[0]
    text = tokenizer.decode(first["input_ids"])
    assert "Current weather in a city" in text
    assert '"name": "get_weather", "arguments": {"city": "Paris"}' in text
    assert "18 C, sunny" in text
    # AND the tool-call turn and the answer carry loss (with their end of turn), the result and the question none
    trained = mask_runs(tokenizer, first)
    assert len(trained) == 2
    assert '"name": "get_weather", "arguments": {"city": "Paris"}' in trained[0] and trained[0].rstrip().endswith("<|im_end|>")
    assert "It is 18 C and sunny in Paris." in trained[1]
    assert not any("18 C, sunny" in run or "Weather in Paris?" in run for run in trained)
    # AND both parallel calls of the second row are in its trained tool-call turn, and both results in its tokens
    parallel = dataset[1]
    assert '"name": "get_weather", "arguments": {"city": "Rome"}' in mask_runs(tokenizer, parallel)[0]
    assert '"name": "get_time", "arguments": {"city": "Rome"}' in mask_runs(tokenizer, parallel)[0]
    assert "14:05" in tokenizer.decode(parallel["input_ids"]) and "22 C, clear" in tokenizer.decode(parallel["input_ids"])
    # AND a row that ends with a call trains on the call
    assert '"arguments": {"city": "Oslo"}' in mask_runs(tokenizer, dataset[2])[0]


def test_preference_pairs_keep_each_calls_own_arguments(tool_model):
    """As Arrow structs, every row's arguments would get the union of all rows' argument names, null-filled."""
    tokenizer = AutoTokenizer.from_pretrained(tool_model)
    pairs = render_dpo(validate_file(FIXTURES / "openai-preference.jsonl", "dpo").rows, "preference-chat")
    extra = json.loads(json.dumps(pairs[3]))
    extra["chosen"][0]["tool_calls"][0]["function"]["arguments"] = {"town": "Oslo", "days": 3}
    dataset = preference_dataset([*pairs, extra], tokenizer)
    assert dataset[3]["chosen"][0]["tool_calls"][0]["function"]["arguments"] == {"city": "Oslo"}
    assert dataset[4]["chosen"][0]["tool_calls"][0]["function"]["arguments"] == {"town": "Oslo", "days": 3}
    assert dataset[2]["tools"] == [WEATHER] and dataset[0]["tools"] is None


def trainer_rows(tmp_path, model_dir, rows, method: str = "lora"):
    """The trainer of the trainer's own pipeline (validation, rendering, TRL's tokenization and labels) for these rows."""
    job = Job(tmp_path / "ml", model_dir).configure({**FAST, "method": method, "max_length": 256}, train=rows, eval=rows)
    env = SageMakerEnv(job.root)
    inputs = train.read_inputs(env)
    tokenizer = train.load_tokenizer(inputs.model_source, inputs.train.format)
    trainer = train.build_trainer(inputs, env, tokenizer, [])
    return trainer, tokenizer


def test_dpo_on_openai_preference_rows_sees_the_tools_and_calls(tmp_path, tmp_path_factory):
    # GIVEN OpenAI preference rows with tools, calls in the prompt and a call as the preferred output
    base = tmp_path_factory.mktemp("tool-dpo")
    build_model(base, build_chatml_tokenizer(base, CHATML_TOOLS))
    rows = [json.loads(line) for line in (FIXTURES / "openai-preference.jsonl").read_text().splitlines()]
    # WHEN TRL's DPOTrainer prepares them in the trainer's pipeline
    trainer, tokenizer = trainer_rows(tmp_path, base, rows, method="dpo")
    pairs = {tokenizer.decode(row["prompt_ids"]): row for row in trainer.train_dataset}
    # THEN the prompt holds the tool definitions and the call with its arguments as an object, and the preferred
    # response the call it makes
    [(prompt, row)] = [(p, r) for p, r in pairs.items() if "Weather in Oslo?" in p]
    assert '{"name": "get_weather", "description": "Current weather in a city"' in prompt
    assert '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>' in tokenizer.decode(row["chosen_ids"])
    [paris] = [p for p in pairs if "Weather in Paris?" in p]
    assert '"arguments": {"city": "Paris"}' in paris and "18 C, sunny" in paris


def conversation(weight: int | None) -> dict:
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    assistant_call = {"role": "assistant", "content": None, "tool_calls": [call]}
    if weight is not None:
        assistant_call["weight"] = weight
    return {
        "messages": [
            {"role": "system", "content": "Use tools."},
            {"role": "user", "content": "Weather in Paris?"},
            assistant_call,
            {"role": "tool", "tool_call_id": "c1", "content": "18 C"},
            {"role": "assistant", "content": "18 C in Paris."},
        ]
    }


def test_a_tool_call_turn_with_weight_0_contributes_no_loss(tmp_path, tool_model):
    # GIVEN one conversation whose tool-call turn has weight 0, and the same without weights (every turn trained)
    weighted, tokenizer = trainer_rows(tmp_path / "w0", tool_model, [conversation(0)])
    default, _ = trainer_rows(tmp_path / "default", tool_model, [conversation(None)])
    row, full = weighted.train_dataset[0], default.train_dataset[0]
    assert row["input_ids"] == full["input_ids"]
    # AND the tokens of the tool-call turn, as the template lays them out
    internal = validate_file(tmp_path / "w0" / "ml" / "input" / "data" / "train" / "train.jsonl", "sft").rows[0]
    plain = [{k: v for k, v in m.items() if k != "weight"} for m in internal["messages"]]
    _, spans = assistant_spans(tokenizer, plain, marked_template(tokenizer))
    start, end = spans[0]
    assert '"arguments": {"city": "Paris"}' in tokenizer.decode(row["input_ids"][start:end])
    # THEN by default the tool-call turn carries loss; with weight 0 its labels are all -100, the answer's unchanged
    assert all(label != -100 for label in full["labels"][start:end])
    assert all(label == -100 for label in row["labels"][start:end])
    removed = list(full["labels"])
    removed[start:end] = [-100] * (end - start)
    assert row["labels"] == removed
    # AND the loss equals the loss with that turn removed from the mask, and differs from the loss with it
    model = AutoModelForCausalLM.from_pretrained(tool_model)
    ids = torch.tensor([row["input_ids"]])

    def loss(labels):
        with torch.no_grad():
            return model(input_ids=ids, labels=torch.tensor([labels])).loss

    assert torch.equal(loss(row["labels"]), loss(removed))
    assert not torch.allclose(loss(row["labels"]), loss(full["labels"]))


def test_a_template_that_drops_tool_calls_is_refused(base_model_dir):
    """The shared base model's template renders `content` only: trained on it, a model would never see the calls."""
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    rows = render_sft(validate_file(FIXTURES / "openai-chat.jsonl", "sft").rows, "chat")
    with pytest.raises(ChatTemplateError, match=r"4 row\(s\) hold tool calls or tool results, but the chat template"):
        sft_dataset(rows, tokenizer, responses_only=True)
    # rows without tools still train on it
    assert len(sft_dataset(rows[3:4], tokenizer, responses_only=True)) == 1


def test_a_template_that_drops_tool_definitions_is_refused_for_rows_that_define_tools(tmp_path):
    # GIVEN the ChatML tools template without its tools block: calls and results are rendered, definitions are not
    no_tools = CHATML_TOOLS[CHATML_TOOLS.index("{%- for m in messages %}") :]
    tokenizer = build_chatml_tokenizer(tmp_path, no_tools)
    rows = render_sft(validate_file(FIXTURES / "openai-chat.jsonl", "sft").rows, "chat")
    # THEN rows with tools are refused, and rows with calls but no tools are rendered
    with pytest.raises(ChatTemplateError, match=r"4 row\(s\) define tools, but the chat template does not render tool definitions"):
        sft_dataset(rows, tokenizer, responses_only=True)
    without = [{"messages": row["messages"]} for row in rows]
    assert '"arguments": {"city": "Paris"}' in tokenizer.decode(sft_dataset(without, tokenizer, responses_only=True)[0]["input_ids"])


def test_the_chatml_template_given_to_a_tokenizer_without_one_renders_tools_calls_and_results(tmp_path):
    # GIVEN a tokenizer without a chat template, given the trainer's chatml (config chat_template)
    tokenizer = build_chatml_tokenizer(tmp_path, None)
    assert templates.apply(tokenizer, "chatml")
    rows = render_sft(validate_file(FIXTURES / "openai-chat.jsonl", "sft").rows, "chat")
    # WHEN the tool rows are tokenized
    dataset = sft_dataset(rows, tokenizer, responses_only=True)
    # THEN the tools, the call (arguments as an object, as vLLM's hermes parser reads it) and the result are there, and
    # the call is trained with its end of turn
    text = tokenizer.decode(dataset[0]["input_ids"])
    assert '"description": "Current weather in a city"' in text and "18 C, sunny" in text
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>'
    assert call in mask_runs(tokenizer, dataset[0])[0]
    both = mask_runs(tokenizer, dataset[1])[0]
    assert '"arguments": {"city": "Rome"}}\n</tool_call>\n<tool_call>\n{"name": "get_time"' in both
    # AND a conversation without tools reads as before
    assert tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False) == "<|im_start|>user\nHi<|im_end|>\n"


CITIES = [
    "Paris", "Rome", "Oslo", "Lima", "Cairo", "Tokyo", "Delhi", "Quito", "Accra", "Hanoi", "Seoul", "Dakar",
    "Sofia", "Riga", "Bern", "Kyiv", "Baku", "Doha", "Male", "Suva", "Apia", "Nuuk", "Lome", "Juba", "Vaduz",
]


def tool_call_rows(cities: list[str], answer_weight: int) -> list[dict]:
    """Synthetic tool use: the question names a city, the call passes it, the result is read back."""
    rows = []
    for i, city in enumerate(cities):
        call = {"id": f"call_{i}", "type": "function", "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"Weather in {city}?"},
                    {"role": "assistant", "content": None, "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": f"call_{i}", "content": f"{10 + i} C"},
                    {"role": "assistant", "content": f"{10 + i} C in {city}.", "weight": answer_weight},
                ],
                "tools": [WEATHER],
            }
        )
    return rows


def test_training_on_tool_calls_lowers_the_loss_on_held_out_tool_calls(tmp_path, tmp_path_factory):
    # GIVEN a tiny random model with the ChatML tools template, 20 training conversations with tool calls, and 5
    # held-out ones whose answers have weight 0 (so their loss is the loss on the tool calls alone)
    base = tmp_path_factory.mktemp("tool-base")
    build_model(base, build_chatml_tokenizer(base, CHATML_TOOLS))
    held_out = tool_call_rows(CITIES[20:], answer_weight=0)
    job = Job(tmp_path / "ml", base).configure(
        {**FAST, "method": "sft", "max_length": 256, "learning_rate": 3e-3, "num_train_epochs": 8},
        train=tool_call_rows(CITIES[:20], answer_weight=1),
        eval=held_out,
    )
    # WHEN trained (8 epochs of 5 steps)
    assert job.run() == 0, job.failure
    # THEN the loss on the held-out tool calls is well below the base model's
    tokenizer = AutoTokenizer.from_pretrained(base)
    rows = render_sft(validate_file(job.root / "input" / "data" / "eval" / "eval.jsonl", "sft").rows, "chat")
    before = mean_loss(AutoModelForCausalLM.from_pretrained(base), tokenizer, rows, True, 256, tmp_path / "before")
    after = mean_loss(AutoModelForCausalLM.from_pretrained(job.model_dir / "full"), tokenizer, rows, True, 256, tmp_path / "after")
    print(f"held-out tool-call loss: base {before:.4f}, trained {after:.4f}")
    assert after < 0.5 * before, (before, after)
