"""Training runs on a tiny Llama: SFT, LoRA, DPO (with and without LoRA), merge, and the QLoRA setup."""

import json
import tarfile

import pytest
import torch
from conftest import FAST, dpo_rows, folder_digest, sft_rows
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneyard_trainer import train
from tuneyard_trainer.config import from_hyperparameters
from tuneyard_trainer.sagemaker_env import write_adapter_archive


def losses(job) -> list[float]:
    checkpoint = train.newest_checkpoint(job.checkpoints)
    history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


def first_checkpoint_weights(job, name: str) -> dict[str, torch.Tensor]:
    steps = sorted(job.checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return load_file(steps[0] / name)


def sequence_logprob(model, tokenizer, prompt: str, completion: str) -> float:
    """Log-probability of the completion tokens after the chat-formatted prompt."""
    messages = [{"role": "user", "content": prompt}]
    prefix = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": completion}], tokenize=False)
    prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([tokenizer(full, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        logprobs = model(ids).logits.log_softmax(-1)[0, :-1]
    targets = ids[0, 1:]
    picked = logprobs.gather(-1, targets[:, None])[:, 0]
    return float(picked[len(prefix_ids) - 1 :].sum())


def test_lora_trains_the_adapter_only(lora_run, base_model_dir, base_model_digest):
    job = lora_run
    history = losses(job)
    assert sum(history[-3:]) / 3 < sum(history[:3]) / 3 - 0.1
    adapter = job.model_dir / "adapter"
    final = load_file(adapter / "adapter_model.safetensors")
    early = first_checkpoint_weights(job, "adapter_model.safetensors")
    assert final and all("lora_" in name for name in final)
    # lora_B starts at zero; every adapter tensor keeps moving after the first checkpoint
    assert all(not torch.equal(final[name], early[name]) for name in final)
    assert all(final[name].abs().sum() > 0 for name in final if "lora_B" in name)
    # every linear layer of the decoder got an adapter ("all-linear"), the output head did not
    targets = json.loads((adapter / "adapter_config.json").read_text())["target_modules"]
    assert {name.rsplit(".", 1)[-1] for name in targets} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert folder_digest(base_model_dir) == base_model_digest
    assert (adapter / "tokenizer.json").exists() and (adapter / "chat_template.jinja").exists()
    assert not (job.model_dir / "full").exists()
    written = json.loads((job.model_dir / "training_config.json").read_text())
    assert written["config"]["method"] == "lora"
    assert written["artifacts"] == {"adapter": "adapter", "adapter_archive": "adapter.tar.gz"}
    assert written["dataset"] == {
        "format": "chat", "train_rows": 20, "eval_channel": False, "overlong_rows": {"train": 0, "eval": 0}
    }


def test_adapter_archive_holds_the_adapter_files_at_its_root_deterministically(lora_run, tmp_path):
    """model/adapter.tar.gz is what an adapter inference component loads (ArtifactUrl): the adapter's files at
    the root, byte for byte, and the same bytes every time it is built."""
    adapter = lora_run.model_dir / "adapter"
    archive = lora_run.model_dir / "adapter.tar.gz"
    files = sorted(p.name for p in adapter.iterdir() if p.is_file())
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(files)
    assert all(p.is_file() for p in adapter.iterdir())  # no sub-folders to flatten

    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == files  # sorted, at the root, nothing else
        assert all(m.isfile() and (m.mtime, m.uid, m.gid, m.mode) == (0, 0, 0, 0o644) for m in members)
        tar.extractall(tmp_path / "extracted", filter="data")
    for name in files:
        assert (tmp_path / "extracted" / name).read_bytes() == (adapter / name).read_bytes(), name
    raw = archive.read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip header mtime

    write_adapter_archive(adapter, tmp_path / "again.tar.gz")
    assert (tmp_path / "again.tar.gz").read_bytes() == raw
    assert not list(lora_run.model_dir.glob("*.partial"))


def test_full_sft_changes_every_weight(job, base_model_dir):
    job.configure({**FAST, "method": "sft", "learning_rate": 2e-3, "num_train_epochs": 3}, train=sft_rows())
    assert job.run() == 0, job.failure
    history = losses(job)
    assert sum(history[-3:]) / 3 < sum(history[:3]) / 3 - 0.3
    base = load_file(base_model_dir / "model.safetensors")
    tuned = load_file(job.model_dir / "full" / "model.safetensors")
    assert tuned.keys() == base.keys()
    unchanged = [name for name in base if torch.equal(base[name], tuned[name])]
    assert unchanged == []
    assert (job.model_dir / "full" / "config.json").exists() and not (job.model_dir / "adapter").exists()
    assert not (job.model_dir / "adapter.tar.gz").exists()


def test_merged_model_equals_base_plus_adapter(job, base_model_dir):
    job.configure(
        {**FAST, "method": "lora", "learning_rate": 2e-2, "num_train_epochs": 2, "merge": True}, train=sft_rows()
    )
    assert job.run() == 0, job.failure
    from peft import PeftModel

    tokenizer = AutoTokenizer.from_pretrained(job.model_dir / "full")
    ids = tokenizer(["Translate to French: cat chat", "The dog and the sun"], padding=True, return_tensors="pt")
    merged = AutoModelForCausalLM.from_pretrained(job.model_dir / "full")
    assert merged.dtype == torch.bfloat16
    base = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.bfloat16)
    with torch.no_grad():
        base_logits = base(**ids).logits.float()
        reference = PeftModel.from_pretrained(base, job.model_dir / "adapter")(**ids).logits.float()
        merged_logits = merged(**ids).logits.float()
    adapter_effect = (reference - base_logits).abs().max()
    merge_error = (merged_logits - reference).abs().max()
    assert adapter_effect > 0.1
    assert merge_error < adapter_effect / 10
    written = json.loads((job.model_dir / "training_config.json").read_text())
    assert written["artifacts"] == {"adapter": "adapter", "adapter_archive": "adapter.tar.gz", "full": "full"}


@pytest.mark.parametrize("use_lora", [True, False], ids=["dpo-lora", "dpo-full"])
def test_dpo_moves_the_preference_margin_up(request, base_model_dir, use_lora):
    if use_lora:  # the shared run (conftest.DPO_LORA_RUN: 3 epochs, beta 0.5, learning rate 2e-2)
        job, _ = request.getfixturevalue("dpo_lora_run")
    else:
        job = request.getfixturevalue("job")
        hyper = {**FAST, "method": "dpo", "use_lora": False, "num_train_epochs": 3, "dpo_beta": 0.5}
        job.configure({**hyper, "learning_rate": 2e-3}, train=dpo_rows())
        assert job.run() == 0, job.failure
    assert (job.model_dir / "adapter.tar.gz").exists() is use_lora
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    base = AutoModelForCausalLM.from_pretrained(base_model_dir)
    if use_lora:
        from peft import PeftModel

        tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_model_dir), job.model_dir / "adapter")
    else:
        tuned = AutoModelForCausalLM.from_pretrained(job.model_dir / "full")

    def margin(model) -> float:
        pairs = dpo_rows()
        return sum(
            sequence_logprob(model, tokenizer, p["prompt"], p["chosen"])
            - sequence_logprob(model, tokenizer, p["prompt"], p["rejected"])
            for p in pairs
        ) / len(pairs)

    assert margin(tuned) > margin(base) + 0.5
    history = losses(job)
    assert history[-1] < history[0]


def test_qlora_setup_nf4_double_quant_bf16_and_kbit_preparation(monkeypatch, base_model_dir):
    """On CPU: the exact quantisation config and the k-bit preparation (4-bit kernels need CUDA)."""
    bnb = train.quantization_config()
    assert bnb.load_in_4bit and not bnb.load_in_8bit
    assert bnb.bnb_4bit_quant_type == "nf4"
    assert bnb.bnb_4bit_use_double_quant is True
    assert bnb.bnb_4bit_compute_dtype == torch.bfloat16

    seen = {}

    def fake_from_pretrained(source, **kwargs):
        seen["kwargs"] = kwargs
        return torch.nn.Linear(2, 2)

    def fake_prepare(model, **kwargs):
        seen["prepared"] = kwargs
        return model

    monkeypatch.setattr(train.AutoModelForCausalLM, "from_pretrained", fake_from_pretrained)
    monkeypatch.setattr(train, "prepare_model_for_kbit_training", fake_prepare)
    config = from_hyperparameters({"base_model": "m", "method": "qlora"})
    train.load_model(config, str(base_model_dir))
    quant = seen["kwargs"]["quantization_config"]
    assert (quant.bnb_4bit_quant_type, quant.bnb_4bit_use_double_quant) == ("nf4", True)
    assert quant.bnb_4bit_compute_dtype == torch.bfloat16 and seen["kwargs"]["dtype"] == torch.bfloat16
    assert seen["prepared"] == {
        "use_gradient_checkpointing": True,
        "gradient_checkpointing_kwargs": {"use_reentrant": False},
    }
    peft = train.lora_config(config)
    assert (peft.r, peft.lora_alpha, peft.target_modules, peft.task_type) == (16, 32, "all-linear", "CAUSAL_LM")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="QLoRA 4-bit kernels need an NVIDIA GPU (CUDA)")
def test_qlora_trains_on_a_4bit_base(job, base_model_dir):
    job.configure({**FAST, "method": "qlora", "learning_rate": 1e-2, "num_train_epochs": 3}, train=sft_rows())
    assert job.run() == 0, job.failure
    history = losses(job)
    assert sum(history[-3:]) / 3 < sum(history[:3]) / 3 - 0.1
    final = load_file(job.model_dir / "adapter" / "adapter_model.safetensors")
    early = first_checkpoint_weights(job, "adapter_model.safetensors")
    assert all(not torch.equal(final[name], early[name]) for name in final)
    assert {tensor.dtype for tensor in final.values()} == {torch.float32}  # trained as fp32, not TRL's bf16


def test_attention_auto_picks_flash_attention_when_available_else_sdpa(monkeypatch):
    config = from_hyperparameters({"base_model": "m"})
    monkeypatch.setattr(train, "_flash_attention_available", lambda: False)
    assert train.attention_implementation(config) == "sdpa"
    assert train.attention_implementation(config, flat=True) == "sdpa_varlen"  # padding-free batches
    monkeypatch.setattr(train, "_flash_attention_available", lambda: True)
    assert train.attention_implementation(config) == "flash_attention_2"
    assert train.attention_implementation(config, flat=True) == "flash_attention_2"
    assert train.attention_implementation(from_hyperparameters({"base_model": "m", "attn_implementation": "eager"})) == "eager"


def test_qlora_loads_each_process_onto_its_own_gpu(monkeypatch, base_model_dir):
    """Under torchrun every process loads its 4-bit copy onto GPU LOCAL_RANK, not all onto GPU 0."""
    seen = {}

    def fake_from_pretrained(source, **kwargs):
        seen.update(kwargs)
        return torch.nn.Linear(2, 2)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (9, 0))
    monkeypatch.setattr(train.AutoModelForCausalLM, "from_pretrained", fake_from_pretrained)
    monkeypatch.setattr(train, "prepare_model_for_kbit_training", lambda model, **kwargs: model)
    monkeypatch.setenv("LOCAL_RANK", "3")
    train.load_model(from_hyperparameters({"base_model": "m", "method": "qlora"}), str(base_model_dir))
    assert seen["device_map"] == {"": 3}


@pytest.mark.parametrize("method", ["lora", "dpo"])
def test_training_arguments_are_built_before_the_weights_load(job, monkeypatch, method):
    """Building them sets up the process group, this process's GPU and FSDP's low-memory loading, which
    from_pretrained relies on."""
    from tuneyard_trainer.sagemaker_env import SageMakerEnv

    job.configure({**FAST, "method": method}, train=dpo_rows() if method == "dpo" else sft_rows())
    order = []
    name = "DPOConfig" if method == "dpo" else "SFTConfig"
    real = getattr(train, name)
    monkeypatch.setattr(train, name, lambda **kwargs: order.append("args") or real(**kwargs))

    class Loaded(Exception):
        pass

    def fake_load(config, source, **kwargs):
        order.append("model")
        raise Loaded

    monkeypatch.setattr(train, "load_model", fake_load)
    env = SageMakerEnv(job.root)
    inputs = train.read_inputs(env)
    with pytest.raises(Loaded):
        train.build_trainer(inputs, env, train.load_tokenizer(inputs.model_source, inputs.train.format), [])
    assert order == ["args", "model"]


def test_resume_skips_a_checkpoint_that_only_partly_reached_s3(lora_run, tmp_path):
    """A spot restart downloads whatever SageMaker had uploaded: trainer_state.json can be there without the
    weights or the optimizer. Such a checkpoint is skipped for the previous complete one."""
    import shutil

    folder = tmp_path / "checkpoints"
    shutil.copytree(lora_run.checkpoints, folder)
    assert train.newest_checkpoint(folder).name == "checkpoint-20"
    assert (folder / "checkpoint-20" / train.CHECKPOINT_MANIFEST).exists()
    (folder / "checkpoint-20" / "optimizer.pt").unlink()
    assert train.newest_checkpoint(folder).name == "checkpoint-10"
    weights = folder / "checkpoint-10" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1])  # a file cut short
    assert train.newest_checkpoint(folder) is None
    shutil.copytree(lora_run.checkpoints / "checkpoint-10", folder / "checkpoint-30")
    (folder / "checkpoint-30" / train.CHECKPOINT_MANIFEST).unlink()  # no manifest: never proven complete
    assert train.newest_checkpoint(folder) is None


def test_with_early_stopping_the_best_checkpoint_is_written_and_reported(job, base_model_dir):
    """Trained to translate but evaluated on refusals: the eval loss falls (the template, the end of turn), then
    rises as the translations are learnt. Early stopping ends the run two evaluations after the best one; the model
    written and the metrics in training_config.json are the best checkpoint's, not the last evaluation's."""
    refusals = [
        {"messages": [row["messages"][0], {"role": "assistant", "content": "I do not know."}]} for row in sft_rows()[:8]
    ]
    hyper = {**FAST, "method": "sft", "learning_rate": 2e-3, "num_train_epochs": 6, "eval_steps": 2, "save_steps": 2}
    job.configure({**hyper, "early_stopping_patience": 2}, train=sft_rows(), eval=refusals)
    assert job.run() == 0, job.failure
    state = json.loads((train.newest_checkpoint(job.checkpoints) / "trainer_state.json").read_text())
    evals = {entry["step"]: entry["eval_loss"] for entry in state["log_history"] if "eval_loss" in entry}
    best = min(evals, key=evals.get)
    assert best < max(evals) < 30  # stopped early, after the best evaluation
    reported = json.loads((job.model_dir / "training_config.json").read_text())["final_metrics"]
    assert (reported["step"], reported["eval_loss"]) == (best, evals[best])

    from tuneyard_trainer.data import render_sft
    from tuneyard_trainer.evaluate import mean_loss

    written = AutoModelForCausalLM.from_pretrained(job.model_dir / "full")
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    measured = mean_loss(written, tokenizer, render_sft(refusals, "chat"), True, 64, job.root / "scratch")
    assert measured == pytest.approx(evals[best], rel=1e-4)
