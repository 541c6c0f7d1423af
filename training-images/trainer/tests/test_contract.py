"""The cross-language contract, Python side: every HyperParameters object that lib/recipe.ts renders (the
committed fixture test/fixtures/contracts/hyperparameters.json, which lib/recipe.contract.test.ts keeps
current) parses here to the values the recipe meant. The MetricDefinitions side of the contract is in
test_metrics.py."""

import json

import pytest
from conftest import REPO_ROOT

from tuneyard_trainer.config import TrainerConfig, from_hyperparameters

CASES = json.loads((REPO_ROOT / "test" / "fixtures" / "contracts" / "hyperparameters.json").read_text())["cases"]
BY_NAME = {case["name"]: case["hyperParameters"] for case in CASES}

# Recipe field (TypeScript, camelCase) -> trainer key: lib/recipe.ts RECIPE_FIELDS, written out again here so
# that a renamed key on either side fails this test.
RECIPE_KEYS = {
    "method": "method",
    "useLora": "use_lora",
    "loraR": "lora_r",
    "loraAlpha": "lora_alpha",
    "loraDropout": "lora_dropout",
    "targetModules": "lora_target_modules",
    "learningRate": "learning_rate",
    "lrScheduler": "lr_scheduler_type",
    "warmupRatio": "warmup_ratio",
    "epochs": "num_train_epochs",
    "batchSize": "per_device_train_batch_size",
    "gradientAccumulation": "gradient_accumulation_steps",
    "maxLength": "max_length",
    "overlongRows": "overlong_rows",
    "packing": "packing",
    "completionOnlyLoss": "completion_only_loss",
    "seed": "seed",
    "evalFraction": "eval_fraction",
    "evalSteps": "eval_steps",
    "saveSteps": "save_steps",
    "loggingSteps": "logging_steps",
    "earlyStoppingPatience": "early_stopping_patience",
    "merge": "merge",
    "gradientCheckpointing": "gradient_checkpointing",
    "attnImplementation": "attn_implementation",
    "dpoBeta": "dpo_beta",
    "maxSteps": "max_steps",
    "weightDecay": "weight_decay",
    "maxGradNorm": "max_grad_norm",
    "optim": "optim",
    "neftuneNoiseAlpha": "neftune_noise_alpha",
    "useDora": "use_dora",
    "useRslora": "use_rslora",
    "loraModulesToSave": "lora_modules_to_save",
    "chatTemplate": "chat_template",
    "dpoLossType": "dpo_loss_type",
    "dpoLabelSmoothing": "dpo_label_smoothing",
    "rpoAlpha": "rpo_alpha",
    "precomputeRefLogProbs": "precompute_ref_log_probs",
    "torchCompile": "torch_compile",
    "useLigerKernel": "use_liger_kernel",
    "distribution": "distribution",
    "rewardWeights": "reward_weights",
    "grpoNumGenerations": "grpo_num_generations",
    "grpoMaxCompletionLength": "grpo_max_completion_length",
    "grpoTemperature": "grpo_temperature",
    "grpoBeta": "grpo_beta",
    "grpoLengthGuard": "grpo_length_guard",
    "grpoLengthPenalty": "grpo_length_penalty",
    "grpoFormatRegex": "grpo_format_regex",
    "rlooNumGenerations": "rloo_num_generations",
    "rlooMaxCompletionLength": "rloo_max_completion_length",
    "rlooTemperature": "rloo_temperature",
    "rlooBeta": "rloo_beta",
    "rlooEpsilon": "rloo_epsilon",
}


def intended(case: dict) -> dict:
    """The typed value the recipe meant for every rendered key: the recipe's own value where it sets the field,
    otherwise the trainer's default (the renderer's defaults are declared to be the trainer's)."""
    values = {"base_model": case["baseModel"]}
    if "rewardModel" in case:  # the run's registered reward model (method grpo or rloo), not a recipe field
        values["reward_model"] = case["rewardModel"]
    by_key = {RECIPE_KEYS[field]: value for field, value in case["recipe"].items()}
    for key in case["hyperParameters"]:
        if key not in values:
            values[key] = by_key[key] if key in by_key else TrainerConfig.model_fields[key].default
    return values


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_rendered_hyperparameters_parse_to_the_recipe_values(case):
    rendered = case["hyperParameters"]
    assert all(isinstance(value, str) for value in rendered.values()), "SageMaker passes strings only"
    assert set(case["recipe"]) <= set(RECIPE_KEYS), "a recipe field this test does not know: add it to RECIPE_KEYS"
    unknown = set(rendered) - set(TrainerConfig.model_fields)
    assert not unknown, f"keys the trainer does not have: {sorted(unknown)}"

    config = from_hyperparameters(rendered)

    assert config.model_fields_set == set(rendered)
    for key, expected in intended(case).items():
        parsed = getattr(config, key)
        if key == "lora_target_modules" and isinstance(expected, list):
            assert config.target_modules == expected, key
            continue
        if key == "reward_weights":  # a JSON object in a string, as the trainer parses it
            assert json.loads(parsed) == expected, key
            continue
        if key == "lora_modules_to_save":
            assert config.modules_to_save == expected, key
            continue
        if isinstance(expected, bool):
            assert parsed is expected, key
        elif TrainerConfig.model_fields[key].annotation in (float, float | None):
            assert isinstance(parsed, float) and parsed == float(expected), (key, parsed, expected)
        else:
            assert type(parsed) is type(expected) and parsed == expected, (key, parsed, expected)


SCHEMA = json.loads((REPO_ROOT / "training-images" / "trainer" / "config.schema.json").read_text())


@pytest.mark.parametrize(
    "case", [c for c in CASES if "learningRate" not in c["recipe"]], ids=lambda c: c["name"]
)
def test_a_recipe_without_learning_rate_gets_the_default_of_its_method(case):
    """The renderer leaves the learning rate out; the trainer fills in the rate that config.schema.json documents
    for the method (the table lib/recipe.ts's docs are checked against)."""
    assert "learning_rate" not in case["hyperParameters"]
    config = from_hyperparameters(case["hyperParameters"])
    trained = f"dpo-{'lora' if config.use_lora else 'full'}" if config.method == "dpo" else config.method
    assert config.learning_rate == SCHEMA["properties"]["learning_rate"]["x-tuneyard-default-by-method"][trained]


def test_spot_checks_of_typed_values():
    """A few values written out by hand, so the test does not only compare the fixture with itself."""
    qlora = from_hyperparameters(BY_NAME["qlora, every LoRA/SFT field set"])
    assert (qlora.method, qlora.lora_r, qlora.lora_alpha) == ("qlora", 32, 64)
    assert qlora.packing is True and qlora.completion_only_loss is False and qlora.merge is True
    assert qlora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert (qlora.learning_rate, qlora.lora_dropout, qlora.num_train_epochs) == (1e-4, 0.1, 2.5)
    assert qlora.lr_scheduler_type == "cosine_with_restarts" and qlora.trains_adapter
    assert (qlora.max_steps, qlora.weight_decay, qlora.max_grad_norm, qlora.optim) == (500, 0.01, 0.5, "paged_adamw_8bit")
    assert qlora.use_dora is True and qlora.use_rslora is True and qlora.modules_to_save == ["lm_head"]
    assert (qlora.neftune_noise_alpha, qlora.chat_template) == (5.0, "chatml")
    assert qlora.torch_compile is True and qlora.use_liger_kernel is True

    dpo_full = from_hyperparameters(BY_NAME["dpo on all weights, sharded"])
    assert dpo_full.use_lora is False and not dpo_full.trains_adapter
    assert (dpo_full.learning_rate, dpo_full.dpo_beta, dpo_full.gradient_checkpointing) == (5e-7, 0.2, False)

    dpo_lora = from_hyperparameters(BY_NAME["dpo with a LoRA adapter"])
    assert dpo_lora.trains_adapter and dpo_lora.target_modules == "all-linear" and dpo_lora.lora_r == 8

    assert dpo_lora.learning_rate == 5e-6
    assert (dpo_lora.dpo_loss_type, dpo_lora.dpo_label_smoothing, dpo_lora.precompute_ref_log_probs) == ("robust", 0.1, True)
    assert dpo_lora.dpo_loss_types == (["robust", "sft"], [1.0, 0.5])  # RPO: TRL 1.16's loss list and weights

    rloo = from_hyperparameters(BY_NAME["rloo against a registered reward model"])
    assert rloo.method == "rloo" and rloo.trains_adapter and rloo.merge is False
    assert rloo.reward_model.startswith("s3://") and rloo.reward_model.endswith("/output/model/full/")
    assert (rloo.rloo_num_generations, rloo.rloo_max_completion_length) == (8, 128)
    assert (rloo.rloo_temperature, rloo.rloo_beta, rloo.rloo_epsilon, rloo.learning_rate) == (0.7, 0.02, 0.1, 5e-6)

    sft = from_hyperparameters(BY_NAME["sft with defaults"])
    assert sft.method == "sft" and not sft.trains_adapter and sft.packing is False
    assert sft.learning_rate == 1e-5
    assert sft.base_model == "s3://tuneyard-data/base-models/qwen2.5-0.5b/"
