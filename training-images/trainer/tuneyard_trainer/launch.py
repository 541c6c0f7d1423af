"""Starts training: in this process, or one torchrun worker per GPU on every host (DDP, FSDP, DeepSpeed ZeRO-3).

SageMaker sends SIGTERM to the container's first process only. When workers run under torchrun, this launcher
is that process: on SIGTERM it writes the stop flag that every worker polls between steps (all ranks agree on
the step, save a checkpoint and exit), instead of letting torchrun kill the workers after its own short grace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .config import TrainerConfig
from .sagemaker_env import STOP_EXIT_CODE, ResourceConfig, SageMakerEnv

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
MASTER_PORT = 29500  # TUNEYARD_MASTER_PORT overrides it (tests that run several jobs on one machine)


@dataclass(frozen=True)
class LaunchPlan:
    nnodes: int
    node_rank: int
    nproc_per_node: int
    master_addr: str
    network_interface_name: str | None = None

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node


def is_worker() -> bool:
    """True inside a process torchrun started."""
    return "LOCAL_RANK" in os.environ


def processes_per_node() -> int:
    """One per GPU; TUNEYARD_NPROC_PER_NODE overrides it (CPU runs with the gloo backend, tests)."""
    override = os.environ.get("TUNEYARD_NPROC_PER_NODE")
    return int(override) if override else max(torch.cuda.device_count(), 1)


def plan(config: TrainerConfig, resources: ResourceConfig, nproc_per_node: int) -> LaunchPlan | None:
    """The torchrun layout, or None to train in this process."""
    if config.distribution == "none":
        if len(resources.hosts) > 1:
            raise ValueError(
                f"distribution=none runs on one host, but the job has {len(resources.hosts)} instances; "
                "set distribution to ddp, fsdp or deepspeed, or use InstanceCount 1"
            )
        if nproc_per_node > 1:
            print(f"note: distribution=none trains on 1 of {nproc_per_node} GPUs; set distribution=ddp to use all")
        return None
    hosts = sorted(resources.hosts)  # the same order on every host: rank 0 is the first name
    layout = LaunchPlan(
        len(hosts), hosts.index(resources.current_host), nproc_per_node, hosts[0], resources.network_interface_name
    )
    return layout if layout.world_size > 1 else None


def torchrun_command(layout: LaunchPlan) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={layout.nnodes}",
        f"--node_rank={layout.node_rank}",
        f"--nproc_per_node={layout.nproc_per_node}",
        f"--master_addr={layout.master_addr}",
        f"--master_port={os.environ.get('TUNEYARD_MASTER_PORT', MASTER_PORT)}",
        "-m",
        "tuneyard_trainer",
        "train",
    ]


def torchrun_environment(layout: LaunchPlan, environ: dict[str, str]) -> dict[str, str]:
    """The workers' environment: NCCL (and gloo) pinned to the interface SageMaker names in resourceconfig.json, as
    the SageMaker training toolkit does; left to NCCL's own choice they may pick an interface the other hosts
    cannot reach and hang at the first collective. A value already set wins."""
    env = dict(environ)
    if layout.nnodes > 1 and layout.network_interface_name:
        env.setdefault("NCCL_SOCKET_IFNAME", layout.network_interface_name)
        env.setdefault("GLOO_SOCKET_IFNAME", layout.network_interface_name)
    return env


def distribution_args(config: TrainerConfig) -> dict[str, Any]:
    """TrainingArguments for the chosen distribution (DDP needs none beyond torchrun's environment)."""
    if config.distribution == "fsdp":
        fsdp_config = json.loads((CONFIGS / "fsdp.json").read_text())
        # FSDP checkpoints activations itself; the Trainer's own checkpointing would all-gather twice.
        fsdp_config["activation_checkpointing"] = config.gradient_checkpointing
        return {"fsdp": True, "fsdp_config": fsdp_config, "gradient_checkpointing": False}
    if config.distribution == "deepspeed":
        return {"deepspeed": str(CONFIGS / "zero3.json")}
    return {}


def run_torchrun(env: SageMakerEnv, layout: LaunchPlan) -> int:
    """Runs the workers; returns STOP_EXIT_CODE when SIGTERM stopped them cleanly."""
    env.stop_flag.unlink(missing_ok=True)
    stopping = False

    def request_stop(signum, frame):
        nonlocal stopping
        stopping = True
        env.stop_flag.parent.mkdir(parents=True, exist_ok=True)
        env.stop_flag.touch()
        print(f"received signal {signum}: workers will save a checkpoint and stop", flush=True)

    signal.signal(signal.SIGTERM, request_stop)
    command = torchrun_command(layout)
    print("launching: " + " ".join(command), flush=True)
    code = subprocess.call(command, env=torchrun_environment(layout, dict(os.environ)))
    env.stop_flag.unlink(missing_ok=True)
    if stopping and code == 0:
        return STOP_EXIT_CODE
    return code
