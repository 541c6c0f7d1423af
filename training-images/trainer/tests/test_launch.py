"""The launcher: torchrun layouts from resourceconfig.json, FSDP/ZeRO-3 settings, and a real two-process
DDP run on CPU (gloo)."""

import json
import shutil

import pytest
from conftest import FAST, sft_rows

from tuneyard_trainer import launch
from tuneyard_trainer.config import from_hyperparameters
from tuneyard_trainer.sagemaker_env import ResourceConfig
from tuneyard_trainer.train import CHECKPOINT_MANIFEST, newest_checkpoint


def config(**values):
    return from_hyperparameters({"base_model": "m", **values})


def test_plan_spans_every_gpu_of_every_host():
    hosts = ResourceConfig(current_host="algo-2", hosts=["algo-2", "algo-1"])
    layout = launch.plan(config(distribution="ddp"), hosts, nproc_per_node=8)
    assert layout == launch.LaunchPlan(nnodes=2, node_rank=1, nproc_per_node=8, master_addr="algo-1")
    assert layout.world_size == 16
    command = launch.torchrun_command(layout)
    assert command[1:3] == ["-m", "torch.distributed.run"]
    assert command[3:8] == [
        "--nnodes=2", "--node_rank=1", "--nproc_per_node=8", "--master_addr=algo-1", "--master_port=29500"
    ]
    assert command[-3:] == ["-m", "tuneyard_trainer", "train"]


def test_single_process_cases_and_distribution_none_on_many_hosts():
    one = ResourceConfig(current_host="algo-1", hosts=["algo-1"])
    assert launch.plan(config(distribution="ddp"), one, nproc_per_node=1) is None
    assert launch.plan(config(), one, nproc_per_node=4) is None
    with pytest.raises(ValueError, match="distribution=none runs on one host, but the job has 2 instances"):
        launch.plan(config(), ResourceConfig("algo-1", ["algo-1", "algo-2"]), nproc_per_node=1)


def test_fsdp_settings_are_accepted_by_the_training_arguments(tmp_path):
    from trl import SFTConfig

    args = launch.distribution_args(config(distribution="fsdp"))
    assert args["fsdp"] is True and args["gradient_checkpointing"] is False
    assert args["fsdp_config"] == {
        "version": 2,
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "reshard_after_forward": True,
        "state_dict_type": "SHARDED_STATE_DICT",  # checkpoints: each process saves its shard; the model: whole
        "cpu_ram_efficient_loading": True,
        "activation_checkpointing": True,
    }
    assert launch.distribution_args(config(distribution="fsdp", gradient_checkpointing="false"))["fsdp_config"][
        "activation_checkpointing"
    ] is False
    parsed = SFTConfig(output_dir=str(tmp_path), report_to="none", bf16=False, **args)
    assert parsed.fsdp is True and parsed.fsdp_config["version"] == 2
    assert parsed.fsdp_config["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    # what accelerate's FSDP plugin is built from: checkpoints hold each process's shard of the weights and of
    # the optimizer state, not a copy of everything gathered on rank 0's CPU
    assert parsed.fsdp_plugin_args["state_dict_type"] == "SHARDED_STATE_DICT"


def test_after_fsdp_training_the_model_is_written_whole(job, monkeypatch):
    """FSDP runs only on GPUs (on CPU accelerate trains DDP), so the plugin is stood in for at the end of training:
    with sharded checkpoints, Trainer.save_model writes no weights at all unless the plugin is switched to
    FULL_STATE_DICT first (accelerate's documented final-save switch), which the trainer does."""
    from transformers import TrainerCallback

    from tuneyard_trainer import train

    class Plugin:
        state_dict_type = "SHARDED_STATE_DICT"

        def set_state_dict_type(self, state_dict_type):
            self.state_dict_type = state_dict_type

    plugin = Plugin()

    class ShardedFromHereOn(TrainerCallback):
        def __init__(self, trainer):
            self.trainer = trainer

        def on_train_end(self, args, state, control, **kwargs):
            self.trainer.is_fsdp_enabled = True
            monkeypatch.setattr(self.trainer.accelerator.state, "fsdp_plugin", plugin, raising=False)

    build = train.build_trainer

    def build_with_fsdp_at_the_end(*args, **kwargs):
        trainer = build(*args, **kwargs)
        trainer.add_callback(ShardedFromHereOn(trainer))
        return trainer

    monkeypatch.setattr(train, "build_trainer", build_with_fsdp_at_the_end)
    job.configure({**FAST, "method": "lora", "num_train_epochs": 1}, train=sft_rows())
    assert job.run() == 0, job.failure
    assert plugin.state_dict_type == "FULL_STATE_DICT"
    assert (job.model_dir / "adapter" / "adapter_model.safetensors").stat().st_size > 0


def test_zero3_config_defers_sizes_to_the_trainer():
    args = launch.distribution_args(config(distribution="deepspeed"))
    zero3 = json.loads(open(args["deepspeed"]).read())
    assert zero3["zero_optimization"]["stage"] == 3
    assert zero3["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    # "auto" lets the Trainer fill in the values from our config, so the two cannot disagree
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping"):
        assert zero3[key] == "auto"
    assert zero3["bf16"] == {"enabled": "auto"}
    assert zero3["fp16"] == {"enabled": "auto"}  # V100, T4: the Trainer's fp16 (compute_dtype)
    assert launch.distribution_args(config(distribution="ddp")) == {}


def test_two_process_ddp_run_on_cpu_through_the_launcher(job):
    # 19 training rows, batch 4 per process: 3 steps per epoch on 2 processes (5 on one)
    job.configure({**FAST, "method": "lora", "distribution": "ddp", "num_train_epochs": 2}, train=sft_rows())
    # a free port: another job on this machine (a second test run, a benchmark) may hold the default 29500
    process = job.popen(TUNEYARD_NPROC_PER_NODE="2", TUNEYARD_MASTER_PORT=str(free_port()))
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 0, output[-4000:]
    assert "launching: " in output and "--nproc_per_node=2" in output
    state = json.loads((newest_checkpoint(job.checkpoints) / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    assert (job.model_dir / "adapter" / "adapter_model.safetensors").exists()
    assert json.loads((job.model_dir / "training_config.json").read_text())["config"]["distribution"] == "ddp"
    assert output.count("done: wrote adapter") == 1  # the main process writes the outputs


def test_workers_use_the_network_interface_from_resourceconfig(tmp_path):
    from tuneyard_trainer.sagemaker_env import SageMakerEnv

    config_dir = tmp_path / "input" / "config"
    config_dir.mkdir(parents=True)
    (config_dir / "resourceconfig.json").write_text(
        json.dumps({
            "current_host": "algo-1",
            "current_instance_type": "ml.g5.12xlarge",
            "current_group_name": "homogeneousCluster",
            "hosts": ["algo-1", "algo-2"],
            "instance_groups": [{"instance_group_name": "homogeneousCluster", "instance_type": "ml.g5.12xlarge",
                                 "hosts": ["algo-1", "algo-2"]}],
            "network_interface_name": "eth0",
        })
    )
    resources = SageMakerEnv(tmp_path).read_resource_config()
    layout = launch.plan(config(distribution="ddp"), resources, nproc_per_node=4)
    env = launch.torchrun_environment(layout, {"PATH": "/usr/bin"})
    assert env["NCCL_SOCKET_IFNAME"] == "eth0" and env["GLOO_SOCKET_IFNAME"] == "eth0" and env["PATH"] == "/usr/bin"
    assert launch.torchrun_environment(layout, {"NCCL_SOCKET_IFNAME": "ens5"})["NCCL_SOCKET_IFNAME"] == "ens5"
    one_host = launch.LaunchPlan(1, 0, 4, "algo-1", "eth0")
    assert "NCCL_SOCKET_IFNAME" not in launch.torchrun_environment(one_host, {})


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_hosts_each_with_its_own_disk_and_one_manifest_listing_both(make_job):
    """Two "hosts" on this machine (127.0.0.1 and localhost, one CPU worker each, separate checkpoint folders as on
    SageMaker): each host's worker writes its RNG state to its own disk; the main host's manifest lists both, so a
    restart that finds only the main host's files (what reached S3) does not take the checkpoint as complete."""
    hosts = ["127.0.0.1", "localhost"]
    jobs = []
    for host in hosts:
        job = make_job(host).configure(
            {**FAST, "method": "lora", "distribution": "ddp", "num_train_epochs": 1}, train=sft_rows()
        )
        (job.root / "input" / "config" / "resourceconfig.json").write_text(
            json.dumps({"current_host": host, "hosts": hosts})
        )
        jobs.append(job)
    port = str(free_port())
    processes = [job.popen(TUNEYARD_NPROC_PER_NODE="1", TUNEYARD_MASTER_PORT=port) for job in jobs]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-4000:]
    assert "--nnodes=2 --node_rank=0" in outputs[0] and "--nnodes=2 --node_rank=1" in outputs[1]
    main, other = (job.checkpoints / "checkpoint-3" for job in jobs)
    listed = json.loads((main / CHECKPOINT_MANIFEST).read_text())["files"]
    assert {"rng_state_0.pth", "rng_state_1.pth", "trainer_state.json", "adapter_model.safetensors"} <= set(listed)
    assert not (main / "rng_state_1.pth").exists() and (other / "rng_state_1.pth").exists()
    assert newest_checkpoint(jobs[0].checkpoints) is None  # the other host's RNG state has not arrived
    shutil.copy(other / "rng_state_1.pth", main)  # what a restart downloads from S3 to every host
    assert newest_checkpoint(jobs[0].checkpoints) == main
    assert (jobs[0].model_dir / "adapter" / "adapter_model.safetensors").exists()
    assert not (jobs[1].model_dir / "adapter").exists()  # written once, by the main host
