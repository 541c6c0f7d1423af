"""The SageMaker container layout, rooted at $TUNEYARD_ML_ROOT (default /opt/ml)."""

from __future__ import annotations

import gzip
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STOP_EXIT_CODE = 75  # SIGTERM handled: checkpoint saved, training not finished (EX_TEMPFAIL)


class ChannelError(ValueError):
    """A channel that is missing or does not hold what it should."""


@dataclass(frozen=True)
class ResourceConfig:
    current_host: str
    hosts: list[str]
    # the interface the hosts reach each other on (SageMaker: "eth0"); NCCL must use it across hosts
    network_interface_name: str | None = None


@dataclass(frozen=True)
class SageMakerEnv:
    root: Path

    @classmethod
    def from_environ(cls) -> SageMakerEnv:
        return cls(Path(os.environ.get("TUNEYARD_ML_ROOT", "/opt/ml")))

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def failure_path(self) -> Path:
        return self.root / "output" / "failure"

    @property
    def output_data_dir(self) -> Path:
        return self.root / "output" / "data"

    @property
    def stop_flag(self) -> Path:
        """Written by the launcher when it receives SIGTERM; every worker polls it between steps."""
        return self.root / "output" / "stop-requested"

    def read_hyperparameters(self) -> dict[str, Any]:
        path = self.root / "input" / "config" / "hyperparameters.json"
        if not path.exists():
            raise ChannelError(f"{path} is missing; SageMaker writes it from the job's HyperParameters")
        return json.loads(path.read_text(encoding="utf-8"))

    def read_resource_config(self) -> ResourceConfig:
        path = self.root / "input" / "config" / "resourceconfig.json"
        if not path.exists():
            return ResourceConfig(current_host="localhost", hosts=["localhost"])
        raw = json.loads(path.read_text(encoding="utf-8"))
        return ResourceConfig(
            current_host=raw["current_host"], hosts=raw["hosts"], network_interface_name=raw.get("network_interface_name")
        )

    def channel(self, name: str) -> Path | None:
        """The channel's folder, or None when the job has no such channel."""
        path = self.root / "input" / "data" / name
        return path if path.is_dir() and any(path.iterdir()) else None

    def channel_jsonl(self, name: str) -> Path | None:
        folder = self.channel(name)
        if folder is None:
            return None
        files = sorted(p for p in folder.rglob("*.jsonl") if p.is_file())
        if len(files) != 1:
            raise ChannelError(
                f"channel {name} ({folder}) must hold exactly one .jsonl file, found {len(files)}: "
                f"{[str(p.relative_to(folder)) for p in files]}"
            )
        return files[0]

    def channel_model(self, name: str, scratch: Path) -> Path | None:
        """A model channel's folder; a model.tar.gz (a compressed SageMaker artifact) is extracted to scratch."""
        folder = self.channel(name)
        if folder is None:
            return None
        entries = list(folder.iterdir())
        # only a folder that is nothing but the archive: a training job's uncompressed model/ output also holds
        # adapter.tar.gz, beside the adapter/ folder and training_config.json that evaluate reads
        if len(entries) == 1 and entries[0].name.endswith(".tar.gz") and entries[0].is_file():
            target = scratch / name
            with tarfile.open(entries[0]) as archive:
                archive.extractall(target, filter="data")
            return target
        return folder

    def write_failure(self, reason: str) -> None:
        self.failure_path.parent.mkdir(parents=True, exist_ok=True)
        self.failure_path.write_text(reason.strip() + "\n", encoding="utf-8")


def write_adapter_archive(adapter_dir: Path, archive: Path) -> None:
    """The adapter folder's files at the root of a gzip tarball: what a SageMaker adapter inference component
    loads (its ArtifactUrl). Deterministic: sorted entries, mtime 0, owner 0/root, mode 0644, gzip mtime 0, so
    the same adapter always gives the same bytes."""
    partial = archive.with_name(archive.name + ".partial")
    with open(partial, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped:
        with tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(p for p in adapter_dir.rglob("*") if p.is_file()):
                info = tarfile.TarInfo(path.relative_to(adapter_dir).as_posix())
                info.size = path.stat().st_size
                info.mode = 0o644
                info.mtime = 0
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                with open(path, "rb") as content:
                    tar.addfile(info, content)
    os.replace(partial, archive)
