"""`evaluate`: held-out loss and perplexity of the base and the tuned model, the probe set's loss before and after
tuning (forgetting) and, for DPO, how the tuned model ranks held-out preference pairs against the base (for a reward
model, method=reward, how its scores rank them: see reward_report), written as
eval.json for the pipeline's gate; the answers of both models to the eval prompts (generations.jsonl, see generate.py)
and their accuracy on the multiple-choice benchmark files of the `benchmarks` channel (see benchmarks.py). For the
online RL methods (grpo, rloo), both models' answers scored with the run's own reward (see online_reward)."""

from __future__ import annotations

import json
import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer, SFTConfig

from . import benchmarks, generate, graders, grpo, report as html_report, reward, templates
from .chat import fit_to_length, preference_dataset, sft_dataset, stop_token_ids
from .data import jsonl_lines, render_dpo, render_sft
from .metrics import format_line
from .sagemaker_env import ChannelError, SageMakerEnv
from .train import TRAINING_CONFIG, TokenMeanSFTTrainer, compute_dtype, load_dataset_channel

# Version 1 throughout: `preference` (DPO only), `generation`, `benchmarks` and `reward` (grpo and rloo only) are
# optional fields that readers of version 1 may ignore.
SCHEMA_VERSION = 1
DEFAULT_MAX_LENGTH = 2048
DEFAULT_DPO_BETA = 0.1
DEFAULT_OVERLONG_ROWS = "truncate"  # what trainers wrote before training_config.json recorded overlong_rows
# The run's graders arrive as the `graders` channel: graders.json, which PlanRun writes to eval-reports/<run>/ (a
# hyperparameter value holds at most 2,500 characters, less than a long python grader or judge prompt). Its bound is
# lib/run-request.ts GRADERS_FILE_MAX_BYTES. Jobs planned before the channel pass them as the `graders` hyperparameter.
GRADERS_CHANNEL = "graders"
GRADERS_FILE_MAX_BYTES = 64 * 1024


def eval_only() -> dict[str, Any]:
    """The arguments of a TRL trainer built only to evaluate: no reports, no checkpointing of activations, no progress
    bar, the GPU's mixed precision."""
    return {
        "report_to": "none",
        "bf16": compute_dtype() == torch.bfloat16,
        "gradient_checkpointing": False,
        "disable_tqdm": True,
        "dataloader_pin_memory": torch.cuda.is_available(),
    }


def locate_tuned(folder: Path) -> tuple[str, Path]:
    """("adapter" | "full", path) in what train wrote: model/adapter is preferred (exactly what was trained)."""
    for kind, marker in (("adapter", "adapter_config.json"), ("full", "config.json")):
        if (folder / marker).exists():
            return kind, folder
        if (folder / kind / marker).exists():
            return kind, folder / kind
    raise ChannelError(
        f"the adapter channel ({folder}) holds neither a LoRA adapter (adapter_config.json) nor a model "
        "(config.json); point it at the training job's model output"
    )


def mean_loss(
    model,
    tokenizer,
    rows: list[dict[str, Any]],
    responses_only: bool,
    max_length: int,
    scratch: Path,
    batch_size: int = 4,
    overlong_rows: str = DEFAULT_OVERLONG_ROWS,
) -> float:
    """Mean loss per label token of a model over rows (the same tokenisation, masking and overlong_rows rule as
    training; the figure does not depend on `batch_size`)."""
    tokenized = sft_dataset(rows, tokenizer, responses_only)
    dataset, overlong = fit_to_length(tokenized, tokenizer, max_length, overlong_rows)
    if len(dataset) == 0:
        raise ValueError(f"every row to evaluate is longer than max_length={max_length} tokens (overlong_rows=drop)")
    if overlong:
        action = "left out" if overlong_rows == "drop" else "cut to it"
        print(f"{overlong} of {len(rows)} rows are longer than max_length={max_length} tokens: {action}", flush=True)
    args = SFTConfig(
        output_dir=str(scratch / "trainer"), per_device_eval_batch_size=batch_size, max_length=max_length, **eval_only()
    )
    trainer = TokenMeanSFTTrainer(
        model=model, args=args, train_dataset=dataset, eval_dataset=dataset, processing_class=tokenizer
    )
    return float(trainer.evaluate()["eval_loss"])


def _figures(
    model, tokenizer, eval_rows, probe_rows, responses_only, max_length, overlong_rows, scratch
) -> dict[str, float | None]:
    def loss(rows: list[dict[str, Any]]) -> float:
        return mean_loss(model, tokenizer, rows, responses_only, max_length, scratch, overlong_rows=overlong_rows)

    eval_loss = loss(eval_rows)
    probe = None
    if probe_rows is not None:
        probe = loss(probe_rows)
    return {"eval_loss": eval_loss, "eval_perplexity": math.exp(min(eval_loss, 700.0)), "probe_loss": probe}


def _even_batch_size(count: int, most: int = 8) -> int:
    """The largest batch size up to `most` that divides `count`: every batch then holds as many pairs, so TRL's
    evaluation metrics (a mean of per-batch means) are means over the pairs."""
    return max(size for size in range(1, most + 1) if count % size == 0)


def preference_figures(
    model,
    tokenizer,
    pairs: list[dict[str, Any]],
    beta: float,
    max_length: int,
    scratch: Path,
    reference=None,
    overlong_rows: str = DEFAULT_OVERLONG_ROWS,
) -> dict[str, float | int]:
    """How a DPO-tuned model ranks held-out preference pairs (data.render_dpo), from TRL's DPOTrainer evaluation. A
    response's implicit reward is beta * (log p_tuned - log p_reference), summed over its tokens (end of turn
    included); `accuracy` is the share of pairs whose chosen response has the higher reward (a tie is no win: the
    reference itself scores 0), `reward_margin` the mean of chosen minus rejected reward. The reference is the base
    model: `reference` (full-weight DPO), or, when `model` is a PeftModel, the model with its adapter disabled. Pairs
    longer than max_length are left out or cut as in training (overlong_rows)."""
    dataset, _ = fit_to_length(preference_dataset(pairs, tokenizer), tokenizer, max_length, overlong_rows)
    if len(dataset) == 0:
        raise ValueError(f"every pair to evaluate is longer than max_length={max_length} tokens (overlong_rows=drop)")
    args = DPOConfig(output_dir=str(scratch / "preference"), beta=beta, max_length=max_length, **eval_only())
    trainer = DPOTrainer(
        model=model,
        ref_model=reference,
        args=args,
        train_dataset=dataset,
        eval_dataset=dataset,
        processing_class=tokenizer,
    )
    if isinstance(trainer.model, PeftModel) and "ref" in trainer.model.peft_config:
        # TRL takes a PeftModel it is given for an adapter to train further, against a frozen copy of it ("ref"). Here
        # the reference is the base: without that copy, TRL's reference is the model with its adapters disabled.
        trainer.model.delete_adapter("ref")
    count = len(trainer.eval_dataset)  # TRL leaves out pairs whose prompt alone fills max_length
    if count == 0:
        raise ValueError(
            f"every pair to evaluate has a prompt of max_length={max_length} tokens or more; evaluate needs pairs "
            "whose responses are at least partly inside max_length"
        )
    trainer.args.per_device_eval_batch_size = _even_batch_size(count)
    metrics = trainer.evaluate()
    preferred = round(metrics["eval_rewards/accuracies"] * count)
    return {
        "pairs": count,
        "preferred": preferred,
        "accuracy": preferred / count,
        "chosen_reward": metrics["eval_rewards/chosen"],
        "rejected_reward": metrics["eval_rewards/rejected"],
        "reward_margin": metrics["eval_rewards/margins"],
        "beta": beta,
    }


# The evaluation job's own hyperparameters (all optional): (default, least value).
SETTINGS = {
    "max_generations": (generate.DEFAULT_MAX_GENERATIONS, 0),  # 0: no generations
    "max_new_tokens": (generate.DEFAULT_MAX_NEW_TOKENS, 1),
    "generation_batch_size": (generate.DEFAULT_BATCH_SIZE, 1),
    "max_benchmark_items": (benchmarks.DEFAULT_MAX_ITEMS, 1),  # per benchmark file
    "benchmark_batch_size": (benchmarks.DEFAULT_BATCH_SIZE, 1),
}


def evaluation_settings(hyperparameters: dict[str, Any]) -> dict[str, int]:
    """The SETTINGS from the job's hyperparameters (SageMaker passes them as strings), defaults for the rest."""
    settings = {}
    for key, (default, least) in SETTINGS.items():
        raw = hyperparameters.get(key)
        if raw is None or raw == "":
            settings[key] = default
            continue
        try:
            value = int(str(raw))
        except ValueError:
            value = least - 1
        if value < least:
            raise ValueError(
                f"hyperparameter {key}: {raw!r} is not a whole number of at least {least}; pass e.g. "
                f"{key}={default} (the default) in the evaluation job's hyperparameters"
            )
        settings[key] = value
    return settings


class _Outputs:
    """What each model answers and scores beside its losses: generations and benchmark accuracy."""

    def __init__(self, tokenizer, prompts, stop_ids, suites, settings, max_length):
        self.tokenizer, self.prompts, self.stop_ids, self.suites = tokenizer, prompts, stop_ids, suites
        self.settings, self.max_length = settings, max_length

    def of(self, model) -> dict[str, Any]:
        answers = summary = None
        if self.prompts:
            answers, summary = generate.timed(
                model,
                self.tokenizer,
                self.prompts,
                self.stop_ids,
                self.settings["max_new_tokens"],
                self.settings["generation_batch_size"],
            )
        scores = {
            name: benchmarks.score(model, self.tokenizer, items, self.max_length, self.settings["benchmark_batch_size"])
            for name, (items, _) in self.suites.items()
        }
        return {"answers": answers, "generation": summary, "benchmarks": scores}


def _generation_report(settings, prompts, available, base, tuned) -> dict[str, Any]:
    identical = sum(b.text == t.text for b, t in zip(base["answers"], tuned["answers"], strict=True))
    return {
        "file": generate.GENERATIONS_FILE,
        "items": len(prompts),
        "of": available,
        "max_generations": settings["max_generations"],
        "max_new_tokens": settings["max_new_tokens"],
        "greedy": True,
        "identical_answers": identical,
        "base": base["generation"],
        "tuned": tuned["generation"],
    }


def _grader_items(env: SageMakerEnv, rows: list[dict[str, Any]], prompts: list[generate.Prompt]) -> list[dict[str, Any]]:
    """The `item` each grader reads ({{ item.<field> }}): the eval file's row as written (every field of it, when the
    file's lines are the validated rows one to one), else its validated form, with `reference`: the last assistant
    message (a preference row's chosen response) that the prompt stops before."""
    path = env.channel_jsonl("eval")
    written = [json.loads(line) for _, line in jsonl_lines(path) if isinstance(line, str)] if path else []
    source = written if len(written) == len(rows) and all(isinstance(r, dict) for r in written) else rows
    return [{**source[p.index], "reference": p.reference} for p in prompts]


def _grader_summary(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """graders.grade_rows' results without the per-row scores (those go to generations.jsonl), errors counted and the
    first 5 kept."""
    return {
        name: {
            **{k: v for k, v in result.items() if k not in ("scores", "errors")},
            "graded": sum(score is not None for score in result["scores"]),
            "error_count": len(result["errors"]),
            "errors": result["errors"][:5],
        }
        for name, result in results.items()
    }


def run_graders(env: SageMakerEnv, hyperparameters: dict[str, Any]) -> list[graders.Grader]:
    """The run's graders, validated: the `graders` channel's one JSON file or, for a job planned before the channel,
    the `graders` hyperparameter; [] when the job has neither."""
    folder = env.channel(GRADERS_CHANNEL)
    if folder is None:
        return graders.from_hyperparameters(hyperparameters)
    if "graders" in hyperparameters:
        raise ChannelError(
            "the job has both a graders channel and a graders hyperparameter, so which graders to run is ambiguous; "
            "pass the graders one way (PlanRun uses the channel)"
        )
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if len(files) != 1 or files[0].suffix != ".json":
        raise ChannelError(
            f"channel graders ({folder}) must hold exactly one .json file (graders.json), found "
            f"{[str(p.relative_to(folder)) for p in files]}"
        )
    where = f"channel graders ({files[0].name})"
    size = files[0].stat().st_size
    if size > GRADERS_FILE_MAX_BYTES:
        raise graders.GradersError([("", f"is {size} bytes, over the {GRADERS_FILE_MAX_BYTES} a run's graders may take; use fewer or shorter graders")], where)
    try:
        value = json.loads(files[0].read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise graders.GradersError([("", f"is not UTF-8 JSON ({e}); it must be the graders list as JSON")], where) from None
    return graders.load(value, where=where)


ONLINE_RL_METHODS = ("grpo", "rloo")


@dataclass
class RewardSources:
    """What the training job of an online RL run summed into its reward, as the evaluation job has it."""

    graders: list[graders.Grader]  # grpo: the run's graders (rloo's graders only evaluate)
    reward_model_dir: Path | None  # the reward_model channel's model
    weights: dict[str, float]  # source -> weight (reward_weights), graders then reward_model
    format_regex: str | None  # grpo_format_regex: a completion that misses it gets 0 from every source


def reward_sources(
    env: SageMakerEnv, hyperparameters: dict[str, Any], training: dict[str, Any], recorded: dict[str, float] | None,
    method: str, grader_list,
) -> RewardSources | None:
    """grpo and rloo: the run's reward sources (the graders channel, the reward_model channel) and weights
    (reward_weights), read before any weights load and checked against what rewarded the training job (`recorded`:
    training_config.json's rewards.sources, when it says), so the reward gain the gate reads measures what the run
    optimised; None for other methods. `training` is the training job's config (its grpo_format_regex)."""
    if method not in ONLINE_RL_METHODS:
        return None
    reward_dir = grpo.reward_model_folder(env)
    rewarding = grader_list if method == "grpo" else []
    sources = [g.name for g in rewarding] + ([grpo.REWARD_MODEL_SOURCE] if reward_dir is not None else [])
    weights = grpo.parse_weights(hyperparameters.get("reward_weights"), sources)
    if recorded is not None and recorded != weights:
        raise ChannelError(
            f"the training job (method={method}) was rewarded by {json.dumps(recorded)} (training_config.json "
            f"rewards.sources), but this evaluation job's reward would be {json.dumps(weights)} (its graders channel, "
            "reward_model channel and reward_weights hyperparameter): give the evaluation job the training job's "
            "graders, reward model (reward_model channel) and reward_weights, as PlanRun plans it, so the reward "
            "gain measures what the run optimised"
        )
    if not sources:
        raise ChannelError(
            f"method={method}: the evaluation scores the answers with the run's reward, but the job has neither "
            "graders (the graders channel) nor a reward model (the reward_model channel); pass the training job's "
            "reward sources, as PlanRun plans the evaluation job"
        )
    regex = training.get("grpo_format_regex") if method == "grpo" else None
    return RewardSources(rewarding, reward_dir, weights, regex)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def online_reward(
    sources: RewardSources, tokenizer, prompts: list[generate.Prompt], items: list[dict[str, Any]], answers, batch_size
) -> dict[str, Any]:
    """eval.json `reward`: the base and tuned answers to the eval prompts scored with the run's reward, by the functions
    the training job builds its reward from (grpo.source_rewards: each grader as GraderReward, the reward model as
    ModelReward, with the format guard), each answer's reward their weighted sum (grpo.weighted_rewards). There is no
    length penalty: the answers are capped by the evaluation's max_new_tokens, not by the completion length the run
    trained with. `mean` is over the answers, `by_source` each source's mean before weighting (a row its grader could
    not grade left out, None when none was graded); a figure that is not a finite number is null."""
    guards = grpo.Guards(0, set(), re.compile(sources.format_regex, re.DOTALL) if sources.format_regex else None)
    if sources.reward_model_dir is not None:
        grpo.check_reward_model(sources.reward_model_dir, tokenizer, "the tuned model")
    functions, weights = grpo.source_rewards(
        sources.graders, [grpo.grader_item(item) for item in items], sources.reward_model_dir, sources.weights,
        tokenizer, guards, compute_dtype(),
    )
    # the prompts as the policy saw them in training (grpo.prompt_of: a conversation of roles and contents)
    conversations = [[{"role": m["role"], "content": m.get("content") or ""} for m in p.messages] for p in prompts]
    block: dict[str, Any] = {"sources": sources.weights, "format_regex": sources.format_regex, "rows": len(prompts)}
    for side, answered in answers.items():
        texts = [answer.text for answer in answered]
        completions = [[{"role": "assistant", "content": text}] for text in texts]
        by_source, totals = grpo.weighted_rewards(functions, weights, conversations, completions, batch_size)
        scored = {name: [v for v in values if v is not None] for name, values in by_source.items()}
        block[side] = {
            "mean": _finite(sum(totals) / len(totals)),
            "by_source": {name: _finite(sum(v) / len(v)) if v else None for name, v in scored.items()},
            "format_misses": guards.format_ok(texts).count(False) if guards.format_regex else 0,
        }
    base, tuned = block["base"]["mean"], block["tuned"]["mean"]
    block["gain"] = None if base is None or tuned is None else _finite(tuned - base)
    return block


def run(env: SageMakerEnv) -> int:
    hyperparameters = env.read_hyperparameters() if (env.root / "input" / "config" / "hyperparameters.json").exists() else {}
    settings = evaluation_settings(hyperparameters)
    grader_list = run_graders(env, hyperparameters)  # validated before any weights load
    if grader_list and settings["max_generations"] == 0:
        raise ValueError(
            "hyperparameter max_generations is 0, but the run names graders, which grade the generated answers; "
            "set max_generations above 0 or remove the graders"
        )
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        base_source = env.channel_model("model", scratch)
        tuned_root = env.channel_model("adapter", scratch)
        if base_source is None or tuned_root is None:
            raise ChannelError("evaluate needs the model (base weights) and adapter (training output) channels")
        kind, tuned = locate_tuned(tuned_root)
        training = _training_config(tuned_root)
        history = html_report.read_history(tuned_root)  # the training run's loss curves, for report.html
        method = training.get("method", "sft")
        rewards = reward_sources(env, hyperparameters, training, _recorded_rewards(tuned_root), method, grader_list)
        if rewards is not None and settings["max_generations"] == 0:
            raise ValueError(
                f"hyperparameter max_generations is 0, but the evaluation of a {method} run scores the generated "
                "answers with the run's reward (the gate's reward gain); set max_generations above 0"
            )
        eval_report = load_dataset_channel(env, "eval", method)
        if eval_report is None:
            raise ChannelError("evaluate needs the eval channel (one JSONL file of held-out rows)")
        if method == "reward":
            report = reward_report(env, tuned_root, training, eval_report, grader_list, scratch)
            return _write_reward_report(env, report, history)
        probe_report = load_dataset_channel(env, "probe", "sft")
        completion_only = training.get("completion_only_loss", True)
        max_length = int(training.get("max_length", DEFAULT_MAX_LENGTH))
        overlong_rows = training.get("overlong_rows", DEFAULT_OVERLONG_ROWS)
        eval_rows = render_sft(eval_report.rows, eval_report.format)  # preference rows: prompt and chosen response
        probe_rows = render_sft(probe_report.rows, probe_report.format) if probe_report else None

        suites = {}  # benchmark name: (its first max_benchmark_items items, how many the file holds)
        for name, path in benchmarks.staged(env.root / "input" / "data").items():
            items = benchmarks.load_file(path)
            suites[name] = (items[: settings["max_benchmark_items"]], len(items))

        tokenizer = AutoTokenizer.from_pretrained(str(tuned))
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        available = generate.prompts(eval_report.rows, eval_report.format)
        prompts = available[: settings["max_generations"]]
        if (grader_list or rewards is not None) and not prompts:
            needs = "names graders" if grader_list else f"is a {method} run, whose reward scores the answers"
            raise ValueError(
                f"the run {needs}, but the eval rows ({eval_report.format}) have no prompts to answer; graders and "
                "rewards need chat, prompt-completion, alpaca or preference rows"
            )
        written_stops = training.get("stop_token_ids")  # what train set as the generation config's eos_token_id
        if isinstance(written_stops, int):
            written_stops = [written_stops]
        stop_ids = written_stops or stop_token_ids(tokenizer)
        outputs = _Outputs(tokenizer, prompts, stop_ids, suites, settings, max_length)
        load = {"dtype": compute_dtype(), "device_map": "auto" if torch.cuda.is_available() else None}
        base = AutoModelForCausalLM.from_pretrained(str(base_source), **load)
        templates.fit_embeddings(base, tokenizer)  # rows for the tokens a chat_template added in training
        base_figures = _figures(
            base, tokenizer, eval_rows, probe_rows, completion_only, max_length, overlong_rows, scratch
        )
        if kind == "adapter":
            tuned_model = PeftModel.from_pretrained(base, str(tuned))
            templates.fused_head_compatible(tuned_model)  # trained rows of new tokens in the output head
            with tuned_model.disable_adapter():  # the base: the same weights, the adapter off
                base_outputs = outputs.of(tuned_model)
        else:
            base_outputs = outputs.of(base)
            if method != "dpo":  # full-weight DPO keeps the base: the reference its rewards are measured against
                del base
            tuned_model = AutoModelForCausalLM.from_pretrained(str(tuned), **load)
        tuned_figures = _figures(
            tuned_model, tokenizer, eval_rows, probe_rows, completion_only, max_length, overlong_rows, scratch
        )
        tuned_outputs = outputs.of(tuned_model)
        preference = None
        if method == "dpo":  # last: TRL's DPOTrainer patches the models it evaluates
            beta = float(training.get("dpo_beta", DEFAULT_DPO_BETA))
            pairs = render_dpo(eval_report.rows, eval_report.format)
            reference = base if kind == "full" else None
            preference = preference_figures(
                tuned_model, tokenizer, pairs, beta, max_length, scratch, reference, overlong_rows
            )
        reward_block = None
        if rewards is not None:
            reward_block = online_reward(
                rewards, tokenizer, prompts, _grader_items(env, eval_report.rows, prompts),
                {"base": base_outputs["answers"], "tuned": tuned_outputs["answers"]}, settings["generation_batch_size"],
            )

    report = {
        "schema_version": SCHEMA_VERSION,
        "base": base_figures,
        "tuned": tuned_figures,
        "eval_loss_ratio": tuned_figures["eval_loss"] / base_figures["eval_loss"],
        "forgetting_increase": (
            tuned_figures["probe_loss"] - base_figures["probe_loss"] if probe_rows is not None else None
        ),
        "examples": len(eval_rows),
    }
    if preference is not None:
        report["preference"] = preference
    if reward_block is not None:
        report["reward"] = reward_block
    report["generation"] = (
        _generation_report(settings, prompts, len(available), base_outputs, tuned_outputs) if prompts else None
    )
    grades = {}  # side: graders.grade_rows results
    if grader_list:
        items = _grader_items(env, eval_report.rows, prompts)
        for side, outputs_of in (("base", base_outputs), ("tuned", tuned_outputs)):
            samples = [{"output_text": answer.text} for answer in outputs_of["answers"]]
            grades[side] = graders.grade_rows(grader_list, list(zip(samples, items, strict=True)))
    report["graders"] = {side: _grader_summary(results) for side, results in grades.items()} or None
    report["benchmarks"] = [
        benchmarks.compare(name, total, base_outputs["benchmarks"][name], tuned_outputs["benchmarks"][name])
        for name, (_, total) in suites.items()
    ] or None
    text = json.dumps(report, indent=2) + "\n"
    for folder in (env.model_dir, env.output_data_dir):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "eval.json").write_text(text, encoding="utf-8")
        if prompts:  # beside eval.json: eval-reports/<run id>/<evaluation job>/output/model/generations.jsonl
            generate.write_generations(
                folder / generate.GENERATIONS_FILE,
                prompts,
                base_outputs["answers"],
                tuned_outputs["answers"],
                {side: {name: r["scores"] for name, r in results.items()} for side, results in grades.items()},
            )
        # report.html (the judge, which runs later, renders it again) and the blind A/B sheet with its key apart
        rows = html_report.read_jsonl(folder / generate.GENERATIONS_FILE) if prompts else []
        html_report.write(folder, report, rows, history)
    line = {k: tuned_figures[k] for k in ("eval_loss", "eval_perplexity")}
    if preference is not None:
        line.update(reward_accuracy=preference["accuracy"], reward_margin=preference["reward_margin"])
    print(format_line(0, line), flush=True)
    summary = f"eval_loss_ratio={report['eval_loss_ratio']:.6g}"
    if preference is not None:
        summary += f", preference accuracy {preference['preferred']}/{preference['pairs']}"
    if reward_block is not None:
        means = reward_block["base"]["mean"], reward_block["tuned"]["mean"]
        summary += f", reward {means[0]} -> {means[1]} (gain {reward_block['gain']})"
    if report["generation"] is not None:
        summary += f", {len(prompts)} answers of each model in {generate.GENERATIONS_FILE}"
    for entry in report["benchmarks"] or []:
        summary += f", {entry['name']} accuracy {entry['base_accuracy']:.4g} -> {entry['tuned_accuracy']:.4g}"
    print(f"wrote {env.model_dir / 'eval.json'}: {summary}", flush=True)
    return 0


def reward_report(env: SageMakerEnv, tuned_root: Path, training: dict[str, Any], eval_report, grader_list, scratch: Path):
    """eval.json of a reward model: how its scores rank the held-out pairs (`preference`, beta null) and its pairwise
    loss -log sigmoid(r(chosen) - r(rejected)) as `tuned.eval_loss`. A reward model has no base to compare with (the
    base has no score head): `base` is chance, a model that scores every response alike (loss ln 2, perplexity 2).
    It generates nothing, so a probe, graders and benchmarks, which measure answers, are refused."""
    refused = [
        what
        for what, given in (
            ("a probe (forgetting)", env.channel_jsonl("probe") is not None),
            ("graders", bool(grader_list)),
            ("benchmarks", bool(benchmarks.staged(env.root / "input" / "data"))),
        )
        if given
    ]
    if refused:
        raise ValueError(
            f"the tuned model is a reward model (method=reward), which scores text and generates none, but the job has "
            f"{', '.join(refused)}; evaluate a reward model on its held-out pairs alone (remove them from the run)"
        )
    folder = tuned_root / "full" if (tuned_root / "full" / "config.json").exists() else tuned_root
    if not (folder / "config.json").exists():
        raise ChannelError(
            f"the adapter channel ({tuned_root}) holds no reward model (full/config.json); a reward run writes its "
            "model merged to model/full: point the channel at the training job's model output"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = reward.load_model(str(folder), dtype=compute_dtype(), device_map="auto" if torch.cuda.is_available() else None)
    max_length = int(training.get("max_length", DEFAULT_MAX_LENGTH))
    overlong_rows = training.get("overlong_rows", DEFAULT_OVERLONG_ROWS)
    pairs = render_dpo(eval_report.rows, eval_report.format)
    dataset, _ = fit_to_length(preference_dataset(pairs, tokenizer), tokenizer, max_length, overlong_rows)
    scores = reward.score_pairs(model, tokenizer, dataset, max_length, scratch)
    preference = reward.reward_figures(scores)
    loss = reward.pair_loss(scores)
    chance = reward.CHANCE_PAIR_LOSS
    return {
        "schema_version": SCHEMA_VERSION,
        "base": {"eval_loss": chance, "eval_perplexity": math.exp(chance), "probe_loss": None},
        "tuned": {"eval_loss": loss, "eval_perplexity": math.exp(min(loss, 700.0)), "probe_loss": None},
        "eval_loss_ratio": loss / chance,
        "forgetting_increase": None,
        "examples": preference["pairs"],
        "preference": preference,
        "generation": None,
        "graders": None,
        "benchmarks": None,
    }


def _write_reward_report(env: SageMakerEnv, report: dict[str, Any], history) -> int:
    text = json.dumps(report, indent=2) + "\n"
    for folder in (env.model_dir, env.output_data_dir):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "eval.json").write_text(text, encoding="utf-8")
        html_report.write(folder, report, [], history)
    preference = report["preference"]
    line = {"eval_loss": report["tuned"]["eval_loss"], "reward_accuracy": preference["accuracy"],
            "reward_margin": preference["reward_margin"]}
    print(format_line(0, line), flush=True)
    print(
        f"wrote {env.model_dir / 'eval.json'}: reward model pairwise accuracy {preference['preferred']}/"
        f"{preference['pairs']}, margin {preference['reward_margin']:.6g}, "
        f"eval_loss_ratio={report['eval_loss_ratio']:.6g} (pairwise loss against chance, ln 2)",
        flush=True,
    )
    return 0


def _recorded_rewards(tuned_root: Path) -> dict[str, float] | None:
    """What rewarded an online RL run's training job: training_config.json's rewards.sources (source -> weight)."""
    path = tuned_root / TRAINING_CONFIG
    document = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    return (document.get("rewards") or {}).get("sources")


def _training_config(tuned_root: Path) -> dict[str, Any]:
    """The trainer config the model was trained with (method, max_length, loss masking), when train wrote it."""
    path = tuned_root / TRAINING_CONFIG
    return json.loads(path.read_text(encoding="utf-8"))["config"] if path.exists() else {}
