"""`reward`: a reward model, the first rung of RLHF. The base model with a scalar score head
(AutoModelForSequenceClassification, num_labels=1) trained with TRL's RewardTrainer on the preference pairs DPO takes
(data.render_dpo: `preference`, `preference-chat` and the dialects mapped onto them), by the Bradley-Terry loss
-log sigmoid(r(chosen) - r(rejected)). With an adapter (use_lora) the head is trained whole beside it (PEFT's
SEQ_CLS task, `score` in modules_to_save) and the model is written merged (model/full), so it loads alone as
AutoModelForSequenceClassification; the adapter stays beside it (model/adapter). No reference model: a reward model
is one model scoring two sequences per pair.

The eval job scores the held-out pairs with the tuned reward model (reward_figures): the share of pairs whose chosen
response scores strictly above the rejected one (`accuracy`, a tie is no win, as in TRL's metric) and the mean margin.
A reward model has no base to compare with (the base has no score head): the baseline is chance, a model that scores
every response alike, whose pairwise loss is ln 2 (CHANCE_PAIR_LOSS) and whose accuracy is 0."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerBase
from trl import RewardConfig, RewardTrainer

from . import templates

# The output head PEFT's SEQ_CLS task trains whole beside the adapter (Llama, Qwen, Mistral, Gemma, ...: `score`).
SCORE_HEAD = "score"
# The pairwise loss of a reward model that scores every response alike: -log sigmoid(0).
CHANCE_PAIR_LOSS = math.log(2.0)


def load_model(source: str, **kwargs: Any) -> torch.nn.Module:
    """The base as a reward model: its decoder and a new scalar head (num_labels=1) on the last token's state."""
    return AutoModelForSequenceClassification.from_pretrained(source, num_labels=1, **kwargs)


def config(trainer_args: dict[str, Any]) -> RewardConfig:
    """TRL's RewardConfig from the arguments every method shares (train._trainer_args). Dropout stays off
    (TRL's default: the two scores of a pair must come from the same function)."""
    return RewardConfig(**trainer_args, disable_dropout=True)


def merge_adapter(base_source: str, adapter_dir: Path, out_dir: Path, dtype: torch.dtype) -> None:
    """Writes base + adapter (with its trained score head) as one reward model, loadable alone."""
    base = load_model(base_source, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
    templates.fit_embeddings(base, tokenizer)  # the rows of tokens a chat template added (trained in the adapter)
    base.config.pad_token_id = tokenizer.pad_token_id  # the last non-pad token is the one scored
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))


def score_pairs(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, dataset: Dataset, max_length: int, scratch: Path,
    batch_size: int = 8,
) -> list[tuple[float, float]]:
    """(r(chosen), r(rejected)) of each pair of a preference dataset (chat.preference_dataset), tokenised and
    collated by TRL's RewardTrainer exactly as in training (pairs over max_length left out as it does)."""
    args = RewardConfig(
        output_dir=str(scratch / "reward"),
        max_length=max_length,
        per_device_eval_batch_size=batch_size,
        report_to="none",
        bf16=False,
        gradient_checkpointing=False,
        disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = RewardTrainer(
        model=model, args=args, train_dataset=dataset, eval_dataset=dataset, processing_class=tokenizer
    )
    scores: list[tuple[float, float]] = []
    trainer.model.eval()
    with torch.no_grad():
        for batch in trainer.get_eval_dataloader():
            logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            chosen, rejected = torch.chunk(logits.float().squeeze(-1), chunks=2)
            scores.extend(zip(chosen.tolist(), rejected.tolist(), strict=True))
    return scores


def reward_figures(scores: list[tuple[float, float]]) -> dict[str, Any]:
    """eval.json `preference` of a reward run: how the reward model ranks the held-out pairs. `beta` is null (DPO's
    temperature: a reward model's reward is its score)."""
    if not scores:
        raise ValueError("no pair to score: every held-out pair is longer than max_length (overlong_rows=drop)")
    pairs = len(scores)
    preferred = sum(chosen > rejected for chosen, rejected in scores)
    return {
        "pairs": pairs,
        "preferred": preferred,
        "accuracy": preferred / pairs,
        "chosen_reward": sum(c for c, _ in scores) / pairs,
        "rejected_reward": sum(r for _, r in scores) / pairs,
        "reward_margin": sum(c - r for c, r in scores) / pairs,
        "beta": None,
    }


def pair_loss(scores: list[tuple[float, float]]) -> float:
    """The mean Bradley-Terry loss of the pairs, -log sigmoid(r(chosen) - r(rejected)): the loss RewardTrainer
    minimises, on the held-out pairs."""
    margins = torch.tensor([c - r for c, r in scores], dtype=torch.float64)
    return float(-torch.nn.functional.logsigmoid(margins).mean())
