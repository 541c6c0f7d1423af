"""Which tokens of a conversation carry loss (every assistant turn, none with weight 0), read from the labels of the
trainer's own dataset, for the three ways a template's assistant turns are found: TRL's training variant of a
template it knows (Qwen2.5), a template with {% generation %} markers, and turn-by-turn rendering of any other."""

import pytest
from conftest import FAST, Job, build_chatml_tokenizer, build_model
from trl.chat_template_utils import qwen2_5_chat_template

from tuneyard_trainer import train
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


@pytest.fixture(scope="module", params=["plain", "chatml-marked", "qwen2.5"])
def model(request, tmp_path_factory, base_model_dir) -> tuple:
    """(model folder, end-of-turn token): the shared base model (a template without markers that ends turns with
    eos), or a ChatML tokenizer (turns end with <|im_end|>, eos is <|endoftext|>) and its tiny model."""
    if request.param == "plain":
        return base_model_dir, "<|end|>"
    folder = tmp_path_factory.mktemp(request.param)
    tokenizer = build_chatml_tokenizer(folder, CHATML_MARKED if request.param == "chatml-marked" else qwen2_5_chat_template)
    build_model(folder, tokenizer)
    return folder, "<|im_end|>"


def trainer_for(tmp_path, model_dir, **hyperparameters):
    job = Job(tmp_path / "ml", model_dir).configure(
        {**FAST, "method": "lora", "max_length": 256, **hyperparameters}, train=[{"messages": CONVERSATION}], eval=[{"messages": CONVERSATION}]
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
