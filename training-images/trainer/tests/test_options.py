"""The training options of the recipe, each shown to reach TRL/PEFT/transformers and to change what training does:
max_steps, weight_decay, max_grad_norm, optim, NEFTune, DPO losses (loss_type, label smoothing, RPO, precomputed
reference log-probabilities), DoRA, rsLoRA, modules_to_save, the chatml template for a base model without one, Liger,
torch_compile, and the mixed-precision decisions of GPUs without bf16 (V100, T4) and FSDP-QLoRA."""

import json
from pathlib import Path

import pytest
import torch
from conftest import FAST, Job, build_model, build_tokenizer, dpo_rows, sft_rows
from peft import get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from tuneyard_trainer import chat, templates, train
from tuneyard_trainer.config import from_hyperparameters
from tuneyard_trainer.sagemaker_env import SageMakerEnv

# no checkpoints or evaluations in the way: these runs are a few steps
STEPS = {**FAST, "eval_steps": 100, "save_steps": 100, "learning_rate": 1e-2}


def build(job, hyperparameters: dict, rows: list[dict], **override):
    """The trainer train.run would build; `override`: config values set after the CPU preflight (read_inputs)."""
    job.configure(hyperparameters, train=rows)
    env = SageMakerEnv(job.root)
    inputs = train.read_inputs(env)
    if override:
        inputs.config = inputs.config.model_copy(update=override)
    tokenizer = train.load_tokenizer(inputs.model_source, inputs.train.format, inputs.config.chat_template)
    return train.build_trainer(inputs, env, tokenizer, [])


def trained(trainer) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in trainer.model.named_parameters() if p.requires_grad}


def first_batch(trainer) -> dict:
    return next(iter(trainer.get_train_dataloader()))


# --- steps, decay, clipping, optimiser ------------------------------------------------------------------------------


def test_max_steps_stops_after_that_many_optimizer_steps_whatever_the_epochs(make_job):
    # 20 rows, batch 2 x 2 accumulated: 5 optimizer steps an epoch, 50 for 10 epochs
    trainer = build(make_job("steps"), {**STEPS, "num_train_epochs": 10, "per_device_train_batch_size": 2,
                                        "gradient_accumulation_steps": 2, "max_steps": 7}, sft_rows())
    assert trainer.args.max_steps == 7
    trainer.train()
    assert trainer.state.global_step == 7 and trainer.state.max_steps == 7
    unset = build(make_job("epochs"), {**STEPS, "num_train_epochs": 2}, sft_rows())
    assert unset.args.max_steps == -1  # unset: the epochs decide


def test_weight_decay_reaches_adamw_and_shrinks_the_weights(make_job):
    """Same data, seed and gradients at step 1: with decay the decayed weights end up smaller than without."""
    runs = {}
    for decay in (0.0, 0.5):
        trainer = build(make_job(f"decay-{decay}"), {**STEPS, "method": "sft", "num_train_epochs": 1, "weight_decay": decay},
                        sft_rows())
        trainer.train()
        decayed = [g for g in trainer.optimizer.param_groups if g["weight_decay"] > 0]
        assert [g["weight_decay"] for g in decayed] == ([decay] if decay else [])
        runs[decay] = trained(trainer)
    # transformers decays every weight but biases and norm weights
    names = [n for n in runs[0.0] if "norm" not in n and not n.endswith("bias")]
    norm = {decay: sum(float(run[n].norm()) for n in names) for decay, run in runs.items()}
    assert norm[0.5] < norm[0.0] * 0.999, norm


class GradNormAtUpdate(TrainerCallback):
    """The L2 norm of the gradients the optimizer steps with (after Trainer's clipping)."""

    def __init__(self):
        self.norms = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))


@pytest.mark.parametrize("limit", [0.01, 0.0])
def test_max_grad_norm_clips_the_gradients_the_optimizer_sees(make_job, limit):
    trainer = build(make_job(f"clip-{limit}"), {**STEPS, "max_grad_norm": limit, "num_train_epochs": 1}, sft_rows())
    seen = GradNormAtUpdate()
    trainer.add_callback(seen)
    trainer.train()
    logged = [e["grad_norm"] for e in trainer.state.log_history if "grad_norm" in e]  # before clipping
    assert len(seen.norms) == len(logged) == 5 and min(logged) > 0.05
    if limit:
        assert all(norm <= limit * 1.001 for norm in seen.norms), seen.norms
    else:  # 0: no clipping, the optimizer steps with the gradients as they are
        assert seen.norms == pytest.approx(logged, rel=1e-4)


@pytest.mark.parametrize(("optim", "fused"), [("adamw_torch", False), ("adamw_torch_fused", True)])
def test_optim_picks_the_optimizer(make_job, optim, fused):
    trainer = build(make_job(optim), {**STEPS, "optim": optim}, sft_rows())
    optimizer = trainer.create_optimizer()
    optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper, once prepared
    assert type(optimizer) is torch.optim.AdamW and bool(optimizer.defaults["fused"]) is fused


@pytest.mark.parametrize("optim", ["adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit"])
def test_bitsandbytes_optimizers_are_refused_without_cuda_before_weights_load(job, optim):
    job.configure({**STEPS, "optim": optim}, train=sft_rows())
    with pytest.raises(train.PreflightError, match=f"optim={optim} is a bitsandbytes optimiser, which needs an NVIDIA GPU"):
        train.read_inputs(SageMakerEnv(job.root))


# --- NEFTune ---------------------------------------------------------------------------------------------------------


class EmbeddingsInTraining(TrainerCallback):
    """What the input embeddings give for `ids` during training (Trainer hooks NEFTune in when training starts), in
    train mode and in eval mode, against their weights' rows."""

    def __init__(self, ids: torch.Tensor):
        self.ids, self.seen = ids, None

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if self.seen is None:
            embeddings = model.get_input_embeddings()
            with torch.no_grad():
                clean = embeddings.weight[self.ids].clone()
                model.train()
                noisy = embeddings(self.ids)
                model.eval()
                evaluated = embeddings(self.ids)
                model.train()
            self.seen = clean, noisy, evaluated


@pytest.mark.parametrize("alpha", [5.0, None], ids=["alpha-5", "off"])
def test_neftune_adds_noise_to_the_input_embeddings_in_training_only(make_job, alpha):
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    extra = {"neftune_noise_alpha": alpha} if alpha else {}
    trainer = build(make_job("neftune"), {**STEPS, "method": "lora", "max_steps": 1, **extra}, sft_rows())
    probe = EmbeddingsInTraining(ids)
    trainer.add_callback(probe)
    trainer.train()
    clean, noisy, evaluated = probe.seen
    assert torch.equal(evaluated, clean)  # never at evaluation or inference
    if alpha is None:
        assert torch.equal(noisy, clean)
        return
    # uniform noise in [-a, a], a = alpha / sqrt(tokens x hidden size)
    bound = alpha / (ids.shape[1] * clean.shape[-1]) ** 0.5
    difference = (noisy - clean).abs()
    assert 0 < float(difference.max()) <= bound * 1.0001 and float(difference.mean()) > bound / 4


# --- DPO ------------------------------------------------------------------------------------------------------------


def dpo_loss(make_job, name: str, **hyperparameters) -> tuple[float, object]:
    """The DPO loss of the first batch with the adapter set to the same random values in every run (at
    initialisation the policy is the reference, where several losses coincide)."""
    trainer = build(make_job(name), {**STEPS, "method": "dpo", "dpo_beta": 0.5, **hyperparameters}, dpo_rows())
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, param in sorted(trainer.model.named_parameters()):
            if param.requires_grad:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    batch = trainer._prepare_inputs(first_batch(trainer))
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
    return float(loss), trainer


def test_each_dpo_loss_type_reaches_trl_and_gives_its_own_loss(make_job):
    cases = {
        "sigmoid": {},
        "ipo": {"dpo_loss_type": "ipo"},
        "robust": {"dpo_loss_type": "robust", "dpo_label_smoothing": 0.2},
        "hinge": {"dpo_loss_type": "hinge"},
        "apo_zero": {"dpo_loss_type": "apo_zero"},
        "rpo": {"rpo_alpha": 1.0},  # sigmoid plus the chosen responses' NLL
    }
    losses = {}
    for name, hyperparameters in cases.items():
        losses[name], trainer = dpo_loss(make_job, name, **hyperparameters)
        expected = {"rpo": ["sigmoid", "sft"]}.get(name, [hyperparameters.get("dpo_loss_type", "sigmoid")])
        assert trainer.args.loss_type == expected
        assert trainer.args.label_smoothing == hyperparameters.get("dpo_label_smoothing", 0.0)
    print(losses)
    values = list(losses.values())
    assert all(abs(a - b) > 1e-4 for i, a in enumerate(values) for b in values[i + 1:]), losses
    # the SFT term of RPO is a mean token NLL of a random-init model over a 400-token vocabulary: about ln(400)
    assert losses["rpo"] - losses["sigmoid"] > 3


def test_label_smoothing_changes_the_robust_loss(make_job):
    smoothed, _ = dpo_loss(make_job, "robust-0.2", dpo_loss_type="robust", dpo_label_smoothing=0.2)
    plain, _ = dpo_loss(make_job, "robust-0", dpo_loss_type="robust")
    sigmoid, _ = dpo_loss(make_job, "sigmoid")
    assert plain == pytest.approx(sigmoid, abs=1e-6)  # robust without flips is DPO's sigmoid loss
    assert abs(smoothed - plain) > 1e-4


@pytest.mark.parametrize("use_lora", [True, False], ids=["lora", "full"])
def test_precomputed_reference_log_probs_train_without_a_reference_model(make_job, use_lora):
    trainer = build(make_job(f"precompute-{use_lora}"), {**STEPS, "method": "dpo", "use_lora": use_lora,
                                                         "precompute_ref_log_probs": True, "num_train_epochs": 1}, dpo_rows())
    assert trainer.ref_model is None  # none loaded (full) or run (LoRA) while training
    assert {"ref_chosen_logps", "ref_rejected_logps"} <= set(trainer.train_dataset.column_names)
    before = trained(trainer)
    trainer.train()
    assert trainer.state.global_step == 5
    after = trained(trainer)
    assert all(not torch.equal(before[n], after[n]) for n in before if "lora_A" in n or not use_lora)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert losses and all(loss == loss for loss in losses)  # no NaN


# --- LoRA variants --------------------------------------------------------------------------------------------------


def test_dora_adds_a_magnitude_vector_per_adapted_layer_and_trains_it(make_job):
    trainer = build(make_job("dora"), {**STEPS, "method": "lora", "use_dora": True, "num_train_epochs": 1}, sft_rows())
    magnitudes = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_magnitude_vector" in n}
    assert len(magnitudes) == 2 * 7  # 2 layers x 7 linear modules
    trainer.train()
    after = dict(trainer.model.named_parameters())
    assert all(not torch.equal(after[n].detach(), before) for n, before in magnitudes.items())


def test_rslora_scales_the_adapter_by_alpha_over_the_square_root_of_r(base_model_dir):
    """The same adapter weights give an output delta sqrt(r) = 4 times larger under rsLoRA (alpha/sqrt(r) = 8)
    than under LoRA (alpha/r = 2)."""
    ids = torch.tensor([[5, 6, 7, 8]])
    deltas = {}
    for rslora in (False, True):
        config = from_hyperparameters({"base_model": "m", "lora_r": "16", "lora_alpha": "32", "lora_dropout": "0",
                                       "use_rslora": str(rslora)})
        base = AutoModelForCausalLM.from_pretrained(str(base_model_dir), dtype=torch.float32)
        with torch.no_grad():
            plain = base(ids).logits
        model = get_peft_model(base, train.lora_config(config))
        layer = model.base_model.model.model.layers[0].self_attn.q_proj
        assert layer.scaling["default"] == (8.0 if rslora else 2.0)
        torch.manual_seed(0)
        with torch.no_grad():  # the same adapter weights in both runs
            for name, param in sorted(model.named_parameters()):
                if "lora_" in name:
                    param.copy_(torch.randn_like(param) * 1e-2)
            x = torch.randn(1, 3, 64)
            deltas[rslora] = layer(x) - layer.base_layer(x)
            assert not torch.allclose(model(ids).logits, plain)
    assert torch.allclose(deltas[True], deltas[False] * 4, rtol=1e-4, atol=1e-7)


def test_modules_to_save_trains_the_module_whole_and_saves_it_with_the_adapter(job, base_model_dir):
    job.configure({**STEPS, "method": "lora", "lora_modules_to_save": "lm_head", "num_train_epochs": 1}, train=sft_rows())
    assert job.run() == 0, job.failure
    adapter = load_file(job.model_dir / "adapter" / "adapter_model.safetensors")
    saved = [name for name in adapter if "lm_head" in name]
    assert saved == ["base_model.model.lm_head.weight"]  # PEFT stores a module to save under its own name
    base = AutoModelForCausalLM.from_pretrained(str(base_model_dir), dtype=torch.float32)
    assert adapter[saved[0]].shape == base.lm_head.weight.shape
    assert not torch.equal(adapter[saved[0]].float(), base.lm_head.weight)  # trained


# --- a chat template for a base model without one --------------------------------------------------------------------


@pytest.fixture
def plain_base_dir(tmp_path):
    """A base model whose tokenizer has no chat template (a pretrained, not instruction-tuned, checkpoint)."""
    folder = tmp_path / "plain-base"
    tokenizer = build_tokenizer(folder, template=None)
    assert not tokenizer.chat_template
    build_model(folder, tokenizer)
    return folder


def test_chatml_gives_a_tokenizer_without_template_one_that_ends_turns_with_im_end(plain_base_dir):
    tokenizer = AutoTokenizer.from_pretrained(str(plain_base_dir))
    size = len(tokenizer)
    assert templates.apply(tokenizer, "chatml")
    assert len(tokenizer) == size + 2 and tokenizer.convert_tokens_to_ids("<|im_end|>") == size + 1
    assert chat.end_of_turn_token(tokenizer) == "<|im_end|>"
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer("<|im_start|>assistant", add_special_tokens=False)["input_ids"]
    assert ids[0] == size  # one token, never split
    # a tokenizer with its own template keeps it
    own = AutoTokenizer.from_pretrained(str(plain_base_dir))
    own.chat_template = "{{ messages[0]['content'] }}"
    assert not templates.apply(own, "chatml") and own.chat_template == "{{ messages[0]['content'] }}"


def test_chat_rows_without_a_template_and_none_named_fail_before_weights_load(tmp_path, plain_base_dir):
    job = Job(tmp_path / "ml", plain_base_dir).configure({**STEPS, "method": "lora"}, train=sft_rows())
    inputs = train.read_inputs(SageMakerEnv(job.root))
    with pytest.raises(train.PreflightError, match="has no chat template.*set chat_template \\(recipe chatTemplate\\) to chatml"):
        train.load_tokenizer(inputs.model_source, inputs.train.format, inputs.config.chat_template)


def test_lora_with_chatml_trains_the_new_token_rows_and_saves_them_with_the_adapter(tmp_path, plain_base_dir):
    job = Job(tmp_path / "ml", plain_base_dir)
    job.configure({**STEPS, "method": "lora", "chat_template": "chatml", "num_train_epochs": 6, "merge": True},
                  train=sft_rows())
    assert job.run() == 0, job.failure
    tokenizer = AutoTokenizer.from_pretrained(str(job.model_dir / "adapter"))
    new = tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    assert chat.end_of_turn_token(tokenizer) == "<|im_end|>"
    written = json.loads((job.model_dir / "training_config.json").read_text())
    assert written["end_of_turn_token"] == "<|im_end|>" and written["stop_token_ids"][0] == new[1]

    # the rows of the two new tokens in the input embeddings and the (untied) output head: trained, saved with the
    # adapter
    adapter = load_file(job.model_dir / "adapter" / "adapter_model.safetensors")
    config = json.loads((job.model_dir / "adapter" / "adapter_config.json").read_text())
    assert config["trainable_token_indices"] == {"embed_tokens": new, "lm_head": new}
    rows = {name.split(".")[-3]: t.float() for name, t in adapter.items() if "trainable_tokens_delta" in name}
    assert set(rows) == {"embed_tokens", "lm_head"} and all(t.shape == (2, 64) for t in rows.values())
    base = AutoModelForCausalLM.from_pretrained(str(plain_base_dir), dtype=torch.float32)
    templates.fit_embeddings(base, tokenizer)  # mean resizing: rows near the mean of the others
    mean_row = base.get_output_embeddings().weight[:-2].mean(0)
    assert (rows["lm_head"] - mean_row).norm(dim=-1).min() > 0.05  # moved away from their initialisation

    # the merged model: the tokenizer's vocabulary, the trained rows in place
    merged = AutoModelForCausalLM.from_pretrained(str(job.model_dir / "full"), dtype=torch.float32)
    assert merged.get_input_embeddings().weight.shape[0] == merged.get_output_embeddings().weight.shape[0] == len(tokenizer)
    assert torch.allclose(merged.get_input_embeddings().weight[new], rows["embed_tokens"], atol=1e-2)
    assert torch.allclose(merged.get_output_embeddings().weight[new], rows["lm_head"], atol=1e-2)
    # learned to end its turns: after an answer <|im_end|> is the most likely next token (the base: about 1/vocab)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Translate to French: cat"}, {"role": "assistant", "content": "chat"}], tokenize=False
    ).removesuffix("<|im_end|>\n")
    ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        tuned, untuned = (m(ids).logits[0, -1].softmax(-1) for m in (merged, base))
    print(f"P(<|im_end|>) after an answer: base {float(untuned[new[1]]):.4f}, tuned {float(tuned[new[1]]):.4f}")
    assert int(tuned.argmax()) == new[1] and tuned[new[1]] > 20 * untuned[new[1]]

    # evaluate loads the adapter on a base resized the same way, and measures the tuned model better on its rows
    evaluation = Job(tmp_path / "eval", plain_base_dir).configure({}, eval=sft_rows()[:8])
    (evaluation.root / "input" / "data" / "adapter").symlink_to(job.model_dir, target_is_directory=True)
    assert evaluation.run("evaluate") == 0, evaluation.failure
    report = json.loads((evaluation.model_dir / "eval.json").read_text())
    assert report["tuned"]["eval_loss"] < report["base"]["eval_loss"] - 0.1, report


def test_full_sft_with_chatml_resizes_and_writes_the_resized_model(tmp_path, plain_base_dir):
    job = Job(tmp_path / "ml", plain_base_dir)
    job.configure({**STEPS, "method": "sft", "chat_template": "chatml", "num_train_epochs": 1}, train=sft_rows())
    assert job.run() == 0, job.failure
    model = AutoModelForCausalLM.from_pretrained(str(job.model_dir / "full"))
    tokenizer = AutoTokenizer.from_pretrained(str(job.model_dir / "full"))
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer) == 402
    assert chat.end_of_turn_token(tokenizer) == "<|im_end|>"


def test_full_dpo_with_chatml_gets_a_resized_reference_with_the_policy_rows(tmp_path, plain_base_dir):
    job = Job(tmp_path / "ml", plain_base_dir)
    trainer = build(job, {**STEPS, "method": "dpo", "use_lora": False, "chat_template": "chatml"}, dpo_rows())
    policy, reference = trainer.model.get_input_embeddings().weight, trainer.ref_model.get_input_embeddings().weight
    assert policy.shape == reference.shape == (402, 64)
    assert torch.equal(policy[-2:].to(reference.dtype), reference[-2:])  # mean resizing samples: the same rows
    trainer.train()
    assert trainer.state.global_step == 5


@pytest.mark.parametrize("precompute", [False, True], ids=["reference-by-disabling", "precomputed-reference"])
def test_lora_dpo_with_chatml_trains_and_saves_the_new_token_rows(tmp_path, plain_base_dir, precompute):
    """TRL's DPOTrainer scores both responses through the same fused LM head; the reference is the adapter disabled
    (or its log-probabilities precomputed that way), which leaves the new rows at their initial values."""
    job = Job(tmp_path / "ml", plain_base_dir)
    job.configure({**STEPS, "method": "dpo", "chat_template": "chatml", "dpo_beta": 0.5, "num_train_epochs": 2,
                   "precompute_ref_log_probs": precompute}, train=dpo_rows())
    assert job.run() == 0, job.failure
    adapter = load_file(job.model_dir / "adapter" / "adapter_model.safetensors")
    rows = {name.split(".")[-3] for name in adapter if "trainable_tokens_delta" in name}
    assert rows == {"embed_tokens", "lm_head"}
    written = json.loads((job.model_dir / "training_config.json").read_text())
    assert written["end_of_turn_token"] == "<|im_end|>"
    margins = [e["rewards/margins"] for e in json.loads(
        (train.newest_checkpoint(job.checkpoints) / "trainer_state.json").read_text())["log_history"] if "rewards/margins" in e]
    assert margins[-1] > margins[0]


# --- kernels and compilation -----------------------------------------------------------------------------------------


@pytest.fixture
def restore_llama_module():
    """Liger also patches functions of transformers' Llama module (rotary embeddings) for the whole process: fine in a
    job, which trains one model, but every later test here would then run Triton kernels on the CPU."""
    from transformers.models.llama import modeling_llama

    saved = dict(vars(modeling_llama))
    yield
    for name, value in saved.items():
        if getattr(modeling_llama, name, None) is not value:
            setattr(modeling_llama, name, value)


def test_liger_kernel_is_refused_without_cuda_and_patches_the_model_when_on(job, restore_llama_module):
    job.configure({**STEPS, "use_liger_kernel": True}, train=sft_rows())
    with pytest.raises(train.PreflightError, match="use_liger_kernel=true needs an NVIDIA GPU"):
        train.read_inputs(SageMakerEnv(job.root))
    from liger_kernel.transformers.rms_norm import LigerRMSNorm

    class Started(Exception):
        pass

    class Inspect(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.norms = [m for m in model.modules() if type(m).__name__ == "LlamaRMSNorm"]
            raise Started  # before the first step: Liger's Triton kernels run on CUDA only

    # past the CUDA check: when training starts, Trainer patches Liger's kernels into the model's modules
    trainer = build(job, {**STEPS, "method": "lora"}, sft_rows(), use_liger_kernel=True)
    inspect = Inspect()
    trainer.add_callback(inspect)
    with pytest.raises(Started):
        trainer.train()
    assert len(inspect.norms) == 5 and all(m.forward.__func__ is LigerRMSNorm.forward for m in inspect.norms)


def test_torch_compile_wraps_the_model_in_torch_compile_when_accelerate_prepares_it(make_job):
    from accelerate.state import AcceleratorState

    for compile_ in (True, False):
        AcceleratorState._reset_state(reset_partial_state=True)  # one trainer per process in a job; many in this one
        trainer = build(make_job(f"compile-{compile_}"), {**STEPS, "torch_compile": compile_}, sft_rows())
        assert trainer.args.torch_compile is compile_
        prepared = trainer.accelerator.prepare_model(trainer.model)  # what train() runs (compiling at the first step)
        assert isinstance(prepared, torch._dynamo.eval_frame.OptimizedModule) is compile_
        if compile_:
            assert trainer.args.torch_compile_backend == "inductor"
    AcceleratorState._reset_state(reset_partial_state=True)


# --- precision on GPUs without bf16, and FSDP-QLoRA --------------------------------------------------------------------


@pytest.fixture
def gpu(monkeypatch):
    """A CUDA GPU of the given compute capability. torch.cuda.is_bf16_supported() says True on all of them (it counts
    emulation), so the decision must not rest on it."""

    def make(capability: tuple[int, int]):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)

    return make


@pytest.mark.parametrize(
    ("capability", "gpu_name", "dtype"),
    [((7, 0), "V100", torch.float16), ((7, 5), "T4", torch.float16), ((8, 0), "A100", torch.bfloat16),
     ((8, 9), "L4", torch.bfloat16), ((9, 0), "H100", torch.bfloat16)],
)
def test_mixed_precision_and_4bit_compute_follow_the_gpus_bf16_units(gpu, capability, gpu_name, dtype):
    gpu(capability)
    assert train.compute_dtype() == dtype and train.qlora_compute_dtype() == dtype, gpu_name
    bnb = train.quantization_config()
    assert bnb.bnb_4bit_compute_dtype == dtype and bnb.bnb_4bit_quant_storage == torch.uint8
    sharded = train.quantization_config(sharded=True)
    assert sharded.bnb_4bit_quant_storage == dtype  # FSDP shards the 4-bit weights with the rest
    config = from_hyperparameters({"base_model": "m", "method": "qlora"})
    args = train._trainer_args(config, SageMakerEnv(Path("/tmp/unused")))
    assert (args["bf16"], args["fp16"]) == (dtype == torch.bfloat16, dtype == torch.float16)


def test_on_cpu_training_runs_in_fp32_without_autocast():
    args = train._trainer_args(from_hyperparameters({"base_model": "m"}), SageMakerEnv(Path("/tmp/unused")))
    assert train.compute_dtype() == torch.float32 and (args["bf16"], args["fp16"]) == (False, False)


@pytest.mark.parametrize("capability", [(7, 5), (9, 0)])
def test_fsdp_qlora_stores_4bit_weights_in_the_compute_dtype_and_leaves_placement_to_fsdp(gpu, monkeypatch, capability):
    gpu(capability)
    seen = {}

    def fake_from_pretrained(source, **kwargs):
        seen.update(kwargs)
        return torch.nn.Linear(2, 2)

    monkeypatch.setattr(train.AutoModelForCausalLM, "from_pretrained", fake_from_pretrained)
    monkeypatch.setattr(train, "prepare_model_for_kbit_training", lambda model, **kw: seen.setdefault("prepared", True) and model)
    monkeypatch.setenv("LOCAL_RANK", "1")
    config = from_hyperparameters({"base_model": "m", "method": "qlora", "distribution": "fsdp"})
    train.load_model(config, "m")
    dtype = torch.bfloat16 if capability >= (8, 0) else torch.float16
    assert seen["quantization_config"].bnb_4bit_quant_storage == dtype and seen["dtype"] == dtype
    assert "device_map" not in seen and "prepared" not in seen

    seen.clear()
    train.load_model(from_hyperparameters({"base_model": "m", "method": "qlora", "distribution": "ddp"}), "m")
    assert seen["quantization_config"].bnb_4bit_quant_storage == torch.uint8
    assert seen["device_map"] == {"": 1} and seen["prepared"]


def test_fsdp_qlora_adapter_is_cast_to_the_storage_dtype():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2).to(torch.float16))
    model[1].weight.requires_grad_(False)
    train.fp32_trainable_parameters(model, torch.float16)
    assert model[0].weight.dtype == torch.float16 and model[0].bias.dtype == torch.float16


# --- on a GPU ----------------------------------------------------------------------------------------------------------

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="bitsandbytes' optimisers and Liger's kernels need an NVIDIA GPU (CUDA)")


@CUDA
@pytest.mark.parametrize("optim", ["adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit"])
def test_bitsandbytes_optimizers_train_the_adapter(make_job, optim):
    import bitsandbytes

    trainer = build(make_job(optim), {**STEPS, "method": "lora", "optim": optim, "num_train_epochs": 2}, sft_rows())
    before = trained(trainer)
    trainer.train()
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    assert type(optimizer).__module__.startswith(bitsandbytes.optim.__name__), type(optimizer)
    after = trained(trainer)
    assert all(not torch.equal(before[n], after[n]) for n in before if "lora_A" in n)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert losses[-1] < losses[0]


@CUDA
def test_liger_kernels_train_on_the_gpu(make_job, restore_llama_module):
    trainer = build(make_job("liger-gpu"), {**STEPS, "method": "lora", "use_liger_kernel": True, "num_train_epochs": 2},
                    sft_rows())
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses) == 10 and losses[-1] < losses[0]
