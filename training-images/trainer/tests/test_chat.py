"""Chat templates. Which tokens of a conversation carry loss (every assistant turn, none with weight 0), read from the
labels of the trainer's own dataset, for the three ways a template's assistant turns are found: TRL's training variant
of a template it knows (Qwen2.5), a template with {% generation %} markers, and turn-by-turn rendering of any other.
And the end-of-turn token every written model and adapter stops on."""

import json
import tarfile

import pytest
from conftest import FAST, Job, build_chatml_tokenizer, build_model, sft_rows
from transformers import AutoTokenizer, GenerationConfig
from trl.chat_template_utils import qwen2_5_chat_template

from tuneyard_trainer import train
from tuneyard_trainer.chat import ChatTemplateError, end_of_turn_token, sft_dataset, stop_token_ids
from tuneyard_trainer.sagemaker_env import SageMakerEnv

# ChatML with the assistant turn (content and end of turn) inside {% generation %}.
CHATML_MARKED = (
    "{% for m in messages %}{% if m['role'] == 'assistant' %}<|im_start|>assistant\n"
    "{% generation %}{{ m['content'] }}<|im_end|>\n{% endgeneration %}"
    "{% else %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Translate to French: cat"},
    {"role": "assistant", "content": "chat"},
    {"role": "user", "content": "Translate to French: dog"},
    {"role": "assistant", "content": "chien", "weight": 0},
    {"role": "user", "content": "Translate to French: bird"},
    {"role": "assistant", "content": "oiseau", "weight": 1},
]


def chatml_model(tmp_path_factory, name: str, template: str):
    """A ChatML tokenizer (Qwen2.5's special tokens: turns end with <|im_end|>, eos is <|endoftext|>) and a tiny
    model."""
    folder = tmp_path_factory.mktemp(name)
    build_model(folder, build_chatml_tokenizer(folder, template))
    return folder


@pytest.fixture(scope="module")
def qwen_model_dir(tmp_path_factory):
    return chatml_model(tmp_path_factory, "qwen2.5", qwen2_5_chat_template)


@pytest.fixture(scope="module", params=["plain", "chatml-marked", "qwen2.5"])
def model(request, tmp_path_factory, base_model_dir) -> tuple:
    """(model folder, end-of-turn token): the shared base model (a template without markers that ends turns with
    eos), a ChatML template with markers, or Qwen2.5's (TRL has a training variant of it)."""
    if request.param == "plain":
        return base_model_dir, "<|end|>"
    if request.param == "qwen2.5":
        return request.getfixturevalue("qwen_model_dir"), "<|im_end|>"
    return chatml_model(tmp_path_factory, request.param, CHATML_MARKED), "<|im_end|>"


def trainer_for(tmp_path, model_dir, **hyperparameters):
    rows = [{"messages": CONVERSATION}]
    job = Job(tmp_path / "ml", model_dir).configure(
        {**FAST, "method": "lora", "max_length": 256, **hyperparameters}, train=rows, eval=rows
    )
    env = SageMakerEnv(job.root)
    inputs = train.read_inputs(env)
    tokenizer = train.load_tokenizer(inputs.model_source, inputs.train.format)
    return train.build_trainer(inputs, env, tokenizer, []), tokenizer


def runs(tokenizer, row: dict, trained: bool) -> list[str]:
    """The text of each run of tokens that carry loss (trained) or carry none, whitespace stripped."""
    out, current = [], []
    for token, label in zip(row["input_ids"], row["labels"]):
        if (label != -100) == trained:
            assert not trained or label == token
            current.append(token)
        elif current:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return [tokenizer.decode(ids).strip() for ids in out]


def test_every_assistant_turn_carries_loss_but_those_with_weight_0(tmp_path, model):
    trainer, tokenizer = trainer_for(tmp_path, model[0])
    for dataset in (trainer.train_dataset, trainer.eval_dataset):
        assert runs(tokenizer, dataset[0], trained=True) == [f"chat{model[1]}", f"oiseau{model[1]}"]


def test_without_completion_only_loss_every_token_but_the_weight_0_turn_carries_loss(tmp_path, model):
    trainer, tokenizer = trainer_for(tmp_path, model[0], completion_only_loss=False)
    row = trainer.train_dataset[0]
    assert runs(tokenizer, row, trained=False) == [f"chien{model[1]}"]
    assert tokenizer.decode(row["input_ids"]).startswith(runs(tokenizer, row, trained=True)[0])  # system, user: trained


def test_the_end_of_turn_token_is_read_from_the_chat_template(base_model_dir, qwen_model_dir):
    plain = AutoTokenizer.from_pretrained(base_model_dir)  # turns end with eos
    assert end_of_turn_token(plain) == "<|end|>" and stop_token_ids(plain) == [plain.eos_token_id]
    qwen = AutoTokenizer.from_pretrained(qwen_model_dir)
    assert (qwen.eos_token, end_of_turn_token(qwen)) == ("<|endoftext|>", "<|im_end|>")
    assert stop_token_ids(qwen) == qwen.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])


@pytest.mark.parametrize(
    "hyperparameters", [{"method": "lora", "merge": True}, {"method": "sft"}], ids=["lora-merged", "sft"]
)
def test_tuned_models_stop_on_the_end_of_turn_token(tmp_path, qwen_model_dir, hyperparameters):
    """Qwen2.5's base ends turns with <|im_end|> but its eos is <|endoftext|>: every model written, and the adapter
    (which vLLM serves on the base), must stop on <|im_end|> too."""
    job = Job(tmp_path / "ml", qwen_model_dir).configure(
        {**FAST, "max_length": 256, "num_train_epochs": 1, **hyperparameters}, train=sft_rows()
    )
    assert job.run() == 0, job.failure
    tokenizer = AutoTokenizer.from_pretrained(qwen_model_dir)
    stops = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    for folder in ("adapter", "full") if hyperparameters["method"] == "lora" else ("full",):
        assert GenerationConfig.from_pretrained(job.model_dir / folder).eos_token_id == stops, folder
    if hyperparameters["method"] == "lora":
        with tarfile.open(job.model_dir / "adapter.tar.gz") as archive:
            assert "generation_config.json" in archive.getnames()
    written = json.loads((job.model_dir / "training_config.json").read_text())
    assert (written["end_of_turn_token"], written["stop_token_ids"]) == ("<|im_end|>", stops)


def test_a_template_that_leaves_the_end_of_turn_token_out_of_the_turn_is_refused(qwen_model_dir):
    """Trained without its end-of-turn token, a model never learns to stop."""
    tokenizer = AutoTokenizer.from_pretrained(qwen_model_dir)
    outside = CHATML_MARKED.replace("<|im_end|>\n{% endgeneration %}", "{% endgeneration %}<|im_end|>\n")
    assert outside != CHATML_MARKED
    tokenizer.chat_template = outside
    with pytest.raises(ChatTemplateError, match=r"<\|im_end\|> is not within the turn"):
        sft_dataset([{"messages": CONVERSATION}], tokenizer, responses_only=True)
