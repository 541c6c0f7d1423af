"""The config model: string coercion, unknown keys, impossible combinations, and the committed schema."""

import json

import pytest
from conftest import TRAINER_DIR

from tuneyard_trainer.config import ConfigError, TrainerConfig, from_hyperparameters
from tuneyard_trainer.contracts import render


def test_sagemaker_strings_are_coerced_and_sagemaker_keys_ignored():
    config = from_hyperparameters(
        {
            "base_model": "meta-llama/Llama-3.1-8B-Instruct",
            "method": "qlora",
            "lora_r": "8",
            "lora_dropout": "0.1",
            "learning_rate": "1e-4",
            "num_train_epochs": "2",
            "packing": "true",
            "gradient_checkpointing": "False",
            "lr_scheduler_type": '"linear"',
            "lora_target_modules": "q_proj, v_proj",
            "sagemaker_program": "train.py",
            "sagemaker_region": "eu-west-1",
            "_tuning_objective_metric": "eval_loss",
        }
    )
    assert (config.lora_r, config.lora_dropout, config.learning_rate, config.num_train_epochs) == (8, 0.1, 1e-4, 2.0)
    assert config.packing is True and config.gradient_checkpointing is False
    assert config.lr_scheduler_type == "linear"
    assert config.target_modules == ["q_proj", "v_proj"]
    assert from_hyperparameters({"base_model": "m"}).target_modules == "all-linear"


def test_unknown_key_is_rejected_with_the_closest_name():
    with pytest.raises(ConfigError, match=r'unknown hyperparameter "learning_rat" \(did you mean "learning_rate"\?\)'):
        from_hyperparameters({"base_model": "m", "learning_rat": "1e-4"})
    # a recipe's camelCase name: its snake_case key, not the nearest spelling (use_lora for useDora)
    with pytest.raises(ConfigError, match=r'unknown hyperparameter "useDora" \(did you mean "use_dora"\?\)'):
        from_hyperparameters({"base_model": "m", "method": "lora", "useDora": "true"})
    with pytest.raises(ConfigError, match='unknown hyperparameter "sagemakerish"'):
        from_hyperparameters({"base_model": "m", "sagemakerish": "1"})


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"base_model": None}, "base_model: Field required"),
        ({"lora_r": "eight"}, r"lora_r: Input should be a valid integer.*'eight'"),
        ({"method": "ppo"}, "method: Input should be 'sft', 'lora', 'qlora', 'dpo'"),
        ({"learning_rate": "0"}, "learning_rate: Input should be greater than 0"),
        ({"method": "sft", "merge": "true"}, "merge applies to method lora or qlora or dpo only"),
        ({"method": "sft", "lora_r": "8"}, "lora_r applies to method lora or qlora or dpo"),
        ({"method": "lora", "use_lora": "false"}, "use_lora applies to method dpo"),
        ({"method": "lora", "dpo_beta": "0.2"}, "dpo_beta applies to method dpo only"),
        ({"method": "dpo", "packing": "true"}, "packing applies to method sft or lora or qlora only"),
        ({"method": "dpo", "use_lora": "false", "merge": "true"}, "merge=true needs an adapter"),
        ({"method": "dpo", "use_lora": "false", "lora_r": "4"}, "lora_r has no effect with method=dpo and use_lora=false"),
        ({"method": "qlora", "distribution": "deepspeed"}, "method=qlora with distribution=deepspeed is not supported"),
        ({"method": "dpo", "neftune_noise_alpha": "5"}, "neftune_noise_alpha applies to method sft or lora or qlora only"),
        ({"method": "sft", "use_dora": "true"}, "use_dora applies to method lora or qlora or dpo"),
        ({"method": "dpo", "use_lora": "false", "use_rslora": "true"}, "use_rslora has no effect with method=dpo and use_lora=false"),
        ({"method": "lora", "dpo_loss_type": "ipo"}, "dpo_loss_type applies to method dpo only"),
        ({"method": "dpo", "dpo_loss_type": "ipo", "dpo_label_smoothing": "0.1"}, "dpo_label_smoothing=0.1 has no effect with dpo_loss_type=ipo"),
        ({"method": "dpo", "dpo_label_smoothing": "0.1"}, "has no effect with dpo_loss_type=sigmoid"),
        ({"method": "dpo", "dpo_loss_type": "exo_pair"}, "dpo_loss_type=exo_pair needs dpo_label_smoothing above 0"),
        ({"method": "dpo", "dpo_loss_type": "robust", "dpo_label_smoothing": "0.5"}, "dpo_label_smoothing: Input should be less than 0.5"),
        ({"optim": "lion_8bit"}, "optim: Input should be 'adamw_torch_fused', 'adamw_torch', 'adamw_8bit'"),
        ({"chat_template": "llama3"}, "chat_template: Input should be 'chatml'"),
        ({"max_steps": "0"}, "max_steps: Input should be greater than or equal to 1"),
        ({"early_stopping_patience": "2", "eval_steps": "30", "save_steps": "50"}, "must be a multiple of eval_steps"),
    ],
)
def test_impossible_combinations_fail(raw, message):
    with pytest.raises(ConfigError, match=message):
        from_hyperparameters({k: v for k, v in {"base_model": "m", **raw}.items() if v is not None})


def test_committed_schema_is_current():
    committed = (TRAINER_DIR / "config.schema.json").read_text()
    assert committed == render("config.schema.json"), "stale: run `python -m tuneyard_trainer.contracts`"
    schema = json.loads(committed)
    assert schema["additionalProperties"] is False and schema["required"] == ["base_model"]
    assert set(schema["properties"]) == set(TrainerConfig.model_fields)
    assert schema["properties"]["method"]["enum"][:5] == ["sft", "lora", "qlora", "dpo", "reward"]
    assert schema["properties"]["distribution"]["enum"] == ["none", "ddp", "fsdp", "deepspeed"]
    assert schema["properties"]["dpo_beta"]["x-tuneyard-methods"] == ["dpo"]
    assert schema["properties"]["completion_only_loss"]["default"] is True


@pytest.mark.parametrize(
    "raw, rate",
    [
        ({"method": "lora"}, 2e-4),
        ({"method": "qlora"}, 2e-4),
        ({"method": "sft"}, 1e-5),
        ({"method": "dpo"}, 5e-6),
        ({"method": "dpo", "use_lora": "false"}, 5e-7),
        ({"method": "sft", "learning_rate": "3e-6"}, 3e-6),
    ],
)
def test_learning_rate_defaults_to_what_suits_the_method(job, raw, rate):
    """Full-weight SFT at LoRA's 2e-4 diverges and DPO at it collapses: each method has its own default, which the
    Trainer gets (the TypeScript recipe renders none when unset: test_contract.py)."""
    from tuneyard_trainer.sagemaker_env import SageMakerEnv
    from tuneyard_trainer.train import _trainer_args

    config = from_hyperparameters({"base_model": "m", **raw})
    assert config.learning_rate == rate
    assert ("learning_rate" in config.model_fields_set) is ("learning_rate" in raw)
    assert _trainer_args(config, SageMakerEnv(job.root))["learning_rate"] == rate
    assert config.model_dump()["learning_rate"] == rate  # what training_config.json records


@pytest.mark.parametrize(
    ("pattern", "error"),
    [
        ("(" * 600 + "a" + ")" * 600, "maximum recursion depth exceeded"),  # RecursionError, not re.error
        (r"\w{4294967295}", "the repetition number is too large"),  # OverflowError, not re.error
        ("<answer>(.*?</answer>", "missing \\), unterminated subpattern at position 8"),
    ],
)
def test_a_grpo_format_regex_python_cannot_compile_is_a_config_error(pattern, error):
    """Every way re.compile refuses a pattern (recipe grpoFormatRegex, refused by pythonRegexProblem in TypeScript too)
    is a ConfigError naming the field, never a traceback."""
    with pytest.raises(ConfigError, match=f"grpo_format_regex is not a Python regular expression \\({error}"):
        from_hyperparameters({"base_model": "m", "method": "grpo", "grpo_format_regex": pattern})
