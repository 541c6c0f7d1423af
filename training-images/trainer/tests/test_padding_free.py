"""Padding-free SFT batches: each batch's sequences flattened into one row, kept apart by position_ids (and the
cu_seq_lens flash attention reads). Which architectures keep them apart, that the same tokens carry loss as in a
padded batch, that evaluation stays padded and token-weighted, and that packing is refused where sequences would
leak into each other."""

import pytest
import torch
from conftest import FAST, Job, build_tokenizer
from test_chat import CONVERSATION, trainer_for
from transformers import AutoConfig, AutoModelForCausalLM
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from tuneyard_trainer import attention, train
from tuneyard_trainer.chat import sft_dataset
from tuneyard_trainer.config import from_hyperparameters
from tuneyard_trainer.data import render_sft
from tuneyard_trainer.evaluate import mean_loss

TINY = dict(
    vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, head_dim=16, max_position_embeddings=256, sliding_window=8, pad_token_id=0,
    num_experts=4, num_local_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
    shared_expert_intermediate_size=32,
)
# transformers has no sdpa path for these: they load with eager attention only
EAGER_ONLY = {"gemma2"}


def flattened_logits_match(model_type: str, implementation: str) -> bool:
    """Two sequences (21 and 13 tokens, longer than the sliding windows) flattened by TRL's padding-free collator:
    does each get the logits it gets alone?"""
    torch.manual_seed(0)
    attention.register()
    config = AutoConfig.for_model(model_type, **TINY)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=implementation).eval()
    first, second = torch.randint(1, 128, (21,)).tolist(), torch.randint(1, 128, (13,)).tolist()
    batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(
        [{"input_ids": first}, {"input_ids": second}]
    )
    batch.pop("labels")
    with torch.no_grad():
        flat = model(**batch, use_cache=False).logits[0]
        alone = [model(input_ids=torch.tensor([ids]), use_cache=False).logits[0] for ids in (first, second)]
    return torch.allclose(flat, torch.cat(alone), atol=1e-5)


@pytest.mark.parametrize(
    "model_type,implementation",
    [
        (model_type, implementation)
        for model_type in sorted(train.PADDING_FREE_MODEL_TYPES)
        for implementation in ("sdpa", "eager", attention.NAME)
        if implementation == "eager" or model_type not in EAGER_ONLY
    ],
)
def test_every_listed_architecture_keeps_flattened_sequences_apart(model_type, implementation):
    """Under transformers' sdpa and eager, and under sdpa_varlen (sliding-window layers fall back to sdpa)."""
    assert flattened_logits_match(model_type, implementation)


@pytest.mark.parametrize("model_type", ["mamba", "jamba", "qwen3_next"])
def test_recurrent_and_hybrid_architectures_are_not_listed_because_flattening_changes_their_output(model_type):
    try:
        kept_apart = flattened_logits_match(model_type, "eager")
    except ValueError as err:  # or transformers refuses the flattened batch (without the causal-conv1d kernel)
        assert "can't keep packed sequences apart" in str(err)
        kept_apart = False
    assert not kept_apart
    assert model_type not in train.PADDING_FREE_MODEL_TYPES


def loss_sums(model, batch) -> tuple[float, int]:
    """Summed NLL of the label tokens of a collated batch, and their count (the model's own loss, unaveraged)."""
    labels = batch.pop("labels")
    with torch.no_grad():
        logits = model(**batch, use_cache=False).logits
    targets = labels[:, 1:]
    nll = torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=-100, reduction="sum"
    )
    return float(nll), int((targets != -100).sum())


def test_padding_free_batches_train_the_same_tokens_as_padded_ones(tmp_path, base_model_dir):
    """Multi-turn chats with a weight-0 assistant turn, flattened: every assistant turn but that one carries loss,
    no token is predicted from the sequence before it, and the loss equals the padded batch's."""
    trainer, tokenizer = trainer_for(tmp_path, base_model_dir, per_device_train_batch_size=3)
    assert trainer.data_collator.padding_free
    assert trainer.args.include_num_input_tokens_seen == "all"  # the flattened row holds no padding
    assert trainer.model.config._attn_implementation == attention.NAME  # no flash-attn here
    short = [{"role": "user", "content": "Translate to French: sun"}, {"role": "assistant", "content": "soleil"}]
    rows = [CONVERSATION, short, CONVERSATION[1:3]]
    dataset = sft_dataset([{"messages": r} for r in rows], tokenizer, True)
    features = [{"input_ids": r["input_ids"], "labels": [t if m else -100 for t, m in
                                                            zip(r["input_ids"], r["assistant_masks"])]}
                for r in dataset]
    flat = trainer.data_collator(features)
    padded = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)(features)
    assert flat["input_ids"].shape == (1, sum(len(f["input_ids"]) for f in features))
    assert "attention_mask" not in flat and padded["attention_mask"].shape[0] == 3

    # the tokens that carry loss: the same, in the same order, once the padding is dropped
    kept = padded["labels"][padded["attention_mask"].bool()]
    kept[torch.cat([torch.tensor([0]), padded["attention_mask"].sum(1).cumsum(0)[:-1]])] = -100  # first tokens
    assert torch.equal(flat["labels"][0], kept)
    trained = tokenizer.decode(flat["labels"][0][flat["labels"][0] != -100])
    assert trained.replace(" ", "") == "chat<|end|>oiseau<|end|>soleil<|end|>chat<|end|>"  # not chien (weight 0)

    model = AutoModelForCausalLM.from_pretrained(base_model_dir).eval()
    flat_nll, flat_count = loss_sums(model, dict(flat))
    padded_nll, padded_count = loss_sums(model, dict(padded))
    assert flat_count == padded_count
    assert flat_nll == pytest.approx(padded_nll, rel=1e-5)


def test_evaluation_stays_padded_and_token_weighted_under_padding_free_training(tmp_path, base_model_dir):
    trainer, tokenizer = trainer_for(tmp_path, base_model_dir, per_device_train_batch_size=2)
    assert trainer.data_collator.padding_free
    batch = next(iter(trainer.get_eval_dataloader()))
    assert "attention_mask" in batch and "position_ids" not in batch  # one row per sequence
    assert trainer.data_collator.padding_free  # training batches are still flattened
    rows = [{"messages": CONVERSATION}]
    model = AutoModelForCausalLM.from_pretrained(base_model_dir).eval()
    expected = mean_loss(model, tokenizer, render_sft(rows, "chat"), True, 256, tmp_path)
    assert trainer.evaluate()["eval_loss"] == pytest.approx(expected, rel=1e-5)


def test_dpo_and_unlisted_architectures_train_on_padded_batches():
    config = from_hyperparameters({"base_model": "m", "method": "lora"})
    assert train.padding_free(config, "llama") and train.padding_free(config, "qwen2")
    assert not train.padding_free(config, "jamba")
    assert not train.padding_free(from_hyperparameters({"base_model": "m", "method": "dpo"}), "llama")


def test_packing_is_refused_for_a_model_that_carries_state_across_sequences(tmp_path):
    """Before any weights load: the folder holds a config and a tokenizer only."""
    from transformers import MambaConfig

    folder = tmp_path / "mamba"
    tokenizer = build_tokenizer(folder)
    MambaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1).save_pretrained(folder)
    rows = [{"messages": CONVERSATION[1:3]}] * 4
    job = Job(tmp_path / "ml", folder).configure({**FAST, "method": "lora", "packing": True}, train=rows)
    assert job.run() == 1
    assert "packing=true needs a model that keeps packed sequences apart, and mamba models do not" in job.failure
