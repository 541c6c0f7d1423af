"""The image definition: hadolint finds nothing; the base image is pinned by digest and runs on the NVIDIA drivers
SageMaker documents (natively or through NVIDIA's CUDA forward-compatibility libraries, which the image switches on
when the host driver is older); it installs the torch the tests run; it starts the trainer with train/evaluate.

No Docker engine is needed: the Dockerfile is read as text, and the one shell script it writes is produced by running
its own RUN line here and then run against fake host drivers."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from conftest import REPO_ROOT, TRAINER_DIR

HADOLINT = Path(sys.executable).parent / "hadolint"
DOCKERFILE = TRAINER_DIR / "Dockerfile"
README = TRAINER_DIR / "README.md"

# ---------------------------------------------------------------------------------------------------------------------
# Evidence, as data. README.md ("Image") says the same in prose; the tests below keep the two and the Dockerfile agreeing.
# ---------------------------------------------------------------------------------------------------------------------

# The oldest NVIDIA driver that runs a CUDA major version without forward compatibility (minor-version compatibility
# covers the rest of that major version). Sources: the CUDA toolkit release notes' minimum-driver table (CUDA 13.x:
# >= 580.65.06, https://docs.nvidia.com/cuda/archive/13.0.0/cuda-toolkit-release-notes/index.html; CUDA 12.x:
# >= 525.60.13), and RAPIDS' platform table (https://docs.rapids.ai/platform-support: "CUDA 12: driver 535+, CUDA 13:
# driver 580+").
NATIVE_MIN_DRIVER = {12: 525, 13: 580}


@dataclass(frozen=True)
class Base:
    """A base image and what is known about it."""

    digest: str | None
    cuda: str  # major.minor of the CUDA it is built for
    compat: str | None  # the driver version of the cuda-compat libraries in /usr/local/cuda/compat, if it has them
    forward_compat_branches: frozenset[int]  # host driver branches those libraries run on (NVIDIA_REQUIRE_CUDA)


BASES = {
    # Digest: what `docker pull nvidia/cuda:13.2.1-base-ubuntu24.04` resolved to, in two independent public records:
    # nebius/nebius-physical-ai, npa/docker/workbench/paidf-anomalygen-sky/Dockerfile (CUDA_RUNTIME_IMAGE), whose build
    # also checks `dpkg-query -W cuda-compat-13-2` = 595.58.03-1ubuntu1 and /usr/local/cuda/compat/libcuda.so.595.58.03;
    # and a 2026-07-03 NVIDIA Container Toolkit install report ("Docker pulled digest sha256:7be56e69..."). Not pulled
    # from here (no registry access).
    # Forward-compatibility branches: NVIDIA_REQUIRE_CUDA of NVIDIA's CUDA 13.2 images, "cuda>=13.2" or, for every
    # brand, driver>=535,<536 / >=570,<571 / >=580,<581 / >=590,<591 (a `docker inspect` of a 13.2.0 image; the same
    # list copied into a CUDA 13.2.1 runtime Dockerfile). NVIDIA's base images install cuda-compat-<major>-<minor>
    # (NV_CUDA_COMPAT_PACKAGE in gitlab.com/nvidia/container-images/cuda, dist/*/base/Dockerfile).
    "nvidia/cuda:13.2.1-base-ubuntu24.04": Base(
        digest="sha256:7be56e69d8ae7c3648b8fca009fa35980ecd9c6eefaafbff3ee8c224e0043eb5",
        cuda="13.2",
        compat="595.58.03",
        forward_compat_branches=frozenset({535, 570, 580, 590}),
    ),
    # The base this image used until it was found to need driver >= 580: PyTorch's runtime images are plain Ubuntu
    # plus pip wheels (pytorch/pytorch Dockerfile, `official` stage; docker.Makefile BASE_RUNTIME = ubuntu), so they
    # carry no cuda-compat. Kept here so the rule below is tested against the defect it prevents.
    "pytorch/pytorch:2.15.0-cuda13.2-cudnn9-runtime": Base(
        digest=None, cuda="13.2", compat=None, forward_compat_branches=frozenset()
    ),
}

# NVIDIA driver branches SageMaker documents for each instance family. It documents them for inference hosts only
# (https://docs.aws.amazon.com/sagemaker/latest/dg/inference-gpu-drivers.html: each family's default driver, and the
# drivers of the AMIs `InferenceAmiVersion` offers); for training hosts it publishes none, so this is the nearest
# evidence there is. R470 (CUDA 11.4): default for g4dn, g5, p3, p4d, p4de. R535 (CUDA 12.2,
# al2-ami-sagemaker-inference-gpu-2 and -2-1): default for g6 and p5, offered for g4dn, g5, g6, p3, p4d, p4de, p5.
# R550 (CUDA 12.4, -gpu-3-1): default for p5e and p5en. g6e and p3dn are in no row of the copy found.
SAGEMAKER_DRIVER_BRANCHES: dict[str, tuple[int, ...]] = {
    "g4dn": (470, 535),
    "g5": (470, 535),
    "g6": (535,),
    "g6e": (),
    "p3": (470, 535),
    "p3dn": (),
    "p4d": (470, 535),
    "p4de": (470, 535),
    "p5": (535,),
    "p5e": (550,),
    "p5en": (550,),
}
# R580 (CUDA 13.0): al2023-ami-sagemaker-inference-gpu-4-1 (../shared/PITFALLS.md), no family list found for it.
SAGEMAKER_OTHER_BRANCHES = (580,)

# What the image cannot run on, as README.md ("Image") states it: driver branches, and instance families with no
# documented driver it runs on. Computed below from the data above and compared with these.
UNSUPPORTED_BRANCHES = {470, 550}
FAMILIES_WITHOUT_A_DOCUMENTED_DRIVER = {"g6e", "p3dn", "p5e", "p5en"}

# CUDA 13 builds dropped Volta (sm_70); README.md says so for these families.
FAMILIES_THE_GPU_BUILD_CANNOT_RUN = {"p3", "p3dn"}

ALLOWED_HADOLINT_IGNORES = {
    "DL3008",  # Ubuntu package versions: the base is pinned by digest, its packages follow Ubuntu's security updates
    "SC2016",  # the single-quoted lines of the `python` wrapper keep their $ for run time
}


# ---------------------------------------------------------------------------------------------------------------------
# Reading the Dockerfile
# ---------------------------------------------------------------------------------------------------------------------


def instructions() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined the way Docker joins them (backslash-newline
    removed); comments dropped."""
    result: list[str] = []
    current = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not current and not stripped):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1]
            continue
        result.append(current + line)
        current = ""
    assert not current, "the Dockerfile ends inside a continued instruction"
    return [instruction.strip() for instruction in result]


def only(prefix: str, containing: str = "") -> str:
    found = [i for i in instructions() if i.startswith(prefix) and containing in i]
    assert len(found) == 1, (prefix, containing, found)
    return found[0]


def base_reference() -> tuple[str, str | None]:
    """`image:tag` and the digest of the (only) FROM line."""
    match = re.fullmatch(r"FROM (\S+?)(?:@(\S+))?(?: AS \S+)?", only("FROM "))
    assert match, only("FROM ")
    return match.group(1), match.group(2)


def base() -> Base:
    image, _ = base_reference()
    assert image in BASES, f"{image} is not in BASES: record its digest, CUDA, cuda-compat and their sources first"
    return BASES[image]


def env_path() -> list[str]:
    return only("ENV PATH=").removeprefix("ENV PATH=").split(":")


def pinned(requirement_file: Path, name: str) -> str:
    for line in requirement_file.read_text().splitlines():
        match = re.fullmatch(rf"{re.escape(name)}==(\S+)", line.strip())
        if match:
            return match.group(1)
    raise AssertionError(f"{name} is not pinned in {requirement_file}")


def image_section() -> str:
    text = README.read_text()
    start = text.index("## Image")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def compute_capabilities() -> dict[str, tuple[int, int]]:
    """Compute capability of each GPU model, from lib/instances.ts GPU_COMPUTE_CAPABILITY (the table planRun uses)."""
    source = (REPO_ROOT / "lib" / "instances.ts").read_text()
    table = re.search(r"GPU_COMPUTE_CAPABILITY[^=]*= \{(.*?)\};", source, flags=re.S)
    assert table, "no GPU_COMPUTE_CAPABILITY in lib/instances.ts"
    pairs = re.findall(r"(\w+): (\d+)\.(\d)", table.group(1))
    return {gpu: (int(major), int(minor)) for gpu, major, minor in pairs}


def trainer_min_compute_capability() -> tuple[int, int]:
    """TRAINER_MIN_COMPUTE_CAPABILITY of constructs/training-image: what PlanRun refuses below for the bundled image."""
    source = (REPO_ROOT / "constructs" / "training-image" / "training-image.ts").read_text()
    value = re.search(r"export const TRAINER_MIN_COMPUTE_CAPABILITY = (\d+)\.(\d);", source)
    assert value, "no TRAINER_MIN_COMPUTE_CAPABILITY in constructs/training-image/training-image.ts"
    return int(value.group(1)), int(value.group(2))


def instance_families() -> dict[str, str]:
    """The plane's GPU instance families and their GPU model, from lib/instances.ts (its one instance table)."""
    source = (REPO_ROOT / "lib" / "instances.ts").read_text()
    families = dict(re.findall(r"family\('([a-z0-9]+)', \{ gpuModel: '([A-Za-z0-9]+)'", source))
    assert families, "no families found in lib/instances.ts"
    return families


# ---------------------------------------------------------------------------------------------------------------------
# What a host driver branch and a GPU need
# ---------------------------------------------------------------------------------------------------------------------


def runs_on(image: Base, branch: int) -> bool:
    """Whether a host on this NVIDIA driver branch runs the image: natively, or through its cuda-compat libraries on a
    branch NVIDIA supports them on (the image also has to switch them on: see the wrapper tests)."""
    if branch >= NATIVE_MIN_DRIVER[int(image.cuda.split(".")[0])]:
        return True
    return image.compat is not None and branch in image.forward_compat_branches


def documented_branches() -> set[int]:
    return {b for branches in SAGEMAKER_DRIVER_BRANCHES.values() for b in branches} | set(SAGEMAKER_OTHER_BRANCHES)


def gpu_build_runs_on(capability: tuple[int, int], arch_list: list[str]) -> bool:
    """A CUDA build runs on a GPU when it has SASS for the same major version at or below the GPU's minor version,
    or PTX at or below its compute capability (which the driver compiles)."""
    for arch in arch_list:
        kind, digits = arch.split("_")
        built = (int(digits[:-1]), int(digits[-1]))
        if kind == "sm" and built[0] == capability[0] and built[1] <= capability[1]:
            return True
        if kind == "compute" and built <= capability:
            return True
    return False


# ---------------------------------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------------------------------


def test_hadolint_reports_nothing():
    result = subprocess.run([str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_only_hadolint_ignores_are_the_justified_ones():
    ignores = re.findall(r"^# hadolint ignore=(\S+)$", DOCKERFILE.read_text(), flags=re.M)
    assert {code for line in ignores for code in line.split(",")} <= ALLOWED_HADOLINT_IGNORES


def test_the_base_is_one_image_pinned_by_the_digest_its_evidence_names():
    image, digest = base_reference()
    assert digest is not None and re.fullmatch(r"sha256:[0-9a-f]{64}", digest), f"FROM {image} is not pinned by digest"
    assert BASES[image].digest == digest


def test_the_base_runs_on_the_driver_branches_sagemaker_documents_except_the_ones_the_readme_names():
    image = base()
    major = int(image.cuda.split(".")[0])
    older = {b for b in documented_branches() if b < NATIVE_MIN_DRIVER[major]}
    # SageMaker documents drivers too old for this CUDA natively, so the base must carry cuda-compat...
    assert older and image.compat is not None
    # ...and its compat libraries must be newer than every one of them (else there is nothing to switch to).
    assert all(int(image.compat.split(".")[0]) > b for b in older)
    unsupported = {b for b in documented_branches() if not runs_on(image, b)}
    assert unsupported == UNSUPPORTED_BRANCHES
    section = image_section()
    for branch in sorted(unsupported):
        assert f"R{branch}" in section, f"README.md (Image) does not say the image cannot run on R{branch}"
    for branch in sorted(image.forward_compat_branches):
        assert f"R{branch}" in section


def test_the_previous_base_runs_on_no_default_driver_sagemaker_documents():
    """The defect this rule catches: CUDA 13.2 without cuda-compat needs R580, which no documented default meets."""
    previous = BASES["pytorch/pytorch:2.15.0-cuda13.2-cudnn9-runtime"]
    defaults = {branches[0] for branches in SAGEMAKER_DRIVER_BRANCHES.values() if branches}
    assert defaults and not any(runs_on(previous, b) for b in defaults)


def test_every_instance_family_has_driver_evidence_and_the_readme_names_those_without_a_driver_it_runs_on():
    families = instance_families()
    assert set(families) == set(SAGEMAKER_DRIVER_BRANCHES), "a family in lib/instances.ts has no driver evidence here"
    without = {f for f, branches in SAGEMAKER_DRIVER_BRANCHES.items() if not any(runs_on(base(), b) for b in branches)}
    assert without == FAMILIES_WITHOUT_A_DOCUMENTED_DRIVER
    section = image_section()
    for family in sorted(without):
        assert f"ml.{family}" in section, f"README.md (Image) does not name ml.{family}"


def test_the_torch_build_runs_on_every_gpu_of_the_plane_but_volta_which_the_readme_names():
    families = instance_families()
    capability = compute_capabilities()
    assert set(families.values()) <= set(capability), "a GPU model in lib/instances.ts has no compute capability"
    arch_list = torch.cuda.get_arch_list()
    assert arch_list, "the test venv's torch is not a CUDA build (the image installs the same wheel)"
    cannot = {f for f, gpu in families.items() if not gpu_build_runs_on(capability[gpu], arch_list)}
    assert cannot == FAMILIES_THE_GPU_BUILD_CANNOT_RUN, (cannot, arch_list)
    # PlanRun refuses runs below TRAINER_MIN_COMPUTE_CAPABILITY: exactly the families the build cannot run.
    minimum = trainer_min_compute_capability()
    assert {f for f, gpu in families.items() if capability[gpu] < minimum} == cannot
    assert gpu_build_runs_on(minimum, arch_list)
    section = image_section()
    for family in sorted(cannot):
        assert f"ml.{family}" in section


def test_the_image_installs_the_torch_the_tests_run_built_for_the_base_cuda():
    version = re.search(r"^ARG TORCH_VERSION=(\S+)$", DOCKERFILE.read_text(), flags=re.M)
    assert version, "the Dockerfile does not pin torch with ARG TORCH_VERSION"
    assert version.group(1) == pinned(TRAINER_DIR / "requirements-test.txt", "torch")
    assert torch.__version__.split("+")[0] == version.group(1)
    # PyPI's Linux wheel of this torch is the CUDA build the image gets; its CUDA is the base's, whose cuda-compat
    # (built for that CUDA) it relies on on older drivers. The Dockerfile also asserts this at build time.
    assert torch.version.cuda == base().cuda
    assert 'torch==${TORCH_VERSION}' in only("RUN pip install")
    assert "torch.version.cuda == want" in only("RUN pip install")


def test_entrypoint_runs_the_package_through_the_python_wrapper_and_everything_it_needs_is_copied():
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    entrypoint = json.loads(only("ENTRYPOINT ").removeprefix("ENTRYPOINT "))
    assert entrypoint == ["python", "-m", "tuneyard_trainer"]
    # `python` resolves to the wrapper (first on the PATH), which execs the virtualenv's Python.
    path = env_path()
    assert path[:2] == ["/usr/local/tuneyard/bin", "/opt/venv/bin"] and path[-1] == "${PATH}"
    assert "> /usr/local/tuneyard/bin/python" in only("RUN ", "/usr/local/tuneyard/bin/python")
    assert "python3 -m venv /opt/venv" in only("RUN apt-get")
    for source in ("requirements.txt", "configs/", "tuneyard_trainer/", "metrics.json config.schema.json"):
        assert any(line.startswith("COPY " + source) for line in lines), source
    pins = (TRAINER_DIR / "requirements.txt").read_text().split()
    assert pins and all("==" in pin for pin in pins)


# ---------------------------------------------------------------------------------------------------------------------
# The `python` wrapper, produced by the Dockerfile's own RUN line and run against fake hosts
# ---------------------------------------------------------------------------------------------------------------------

PROPRIETARY = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  {v}  Sun May 12 19:39:15 UTC 2024\nGCC version:  gcc version 7.3.1 20180712 (Red Hat 7.3.1-17) (GCC)\n"
OPEN = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  {v}  Release Build  (dvs-builder@U16-I3-B03-4-3)  Thu Jul 24 11:01:05 UTC 2025\nGCC version:  gcc version 11.5.0 20240719 (Red Hat 11.5.0-5) (GCC)\n"
SHOW = "import os, sys; print(os.environ.get('LD_LIBRARY_PATH', '')); print(sys.argv[1:])"


@pytest.fixture()
def host(tmp_path):
    """A fake host: the wrapper the Dockerfile writes, pointed at a cuda-compat folder, a driver version file and an
    interpreter of this machine; `run` starts it the way SageMaker starts `python -m ...`."""
    compat_version = base().compat
    bindir = tmp_path / "wrapper"
    command = only("RUN ", "/usr/local/tuneyard/bin/python").removeprefix("RUN ")
    subprocess.run(["sh", "-c", command.replace("/usr/local/tuneyard/bin", str(bindir))], check=True)
    script = (bindir / "python").read_text()
    assert os.access(bindir / "python", os.X_OK)

    compat = tmp_path / "compat"
    compat.mkdir()
    (compat / f"libcuda.so.{compat_version}").write_bytes(b"")
    (compat / "libcuda.so.1").symlink_to(f"libcuda.so.{compat_version}")
    version_file = tmp_path / "version"
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("grep", "sed", "readlink", "sort", "head"):
        (tools / tool).symlink_to(shutil.which(tool))
    for path, fake in (("/usr/local/cuda/compat", compat), ("/proc/driver/nvidia/version", version_file),
                       ("/opt/venv/bin/python", Path(sys.executable))):
        assert path in script, path
        script = script.replace(path, str(fake))
    wrapper = tmp_path / "python"
    wrapper.write_text(script)
    wrapper.chmod(0o755)

    class Host:
        def __init__(self):
            self.compat = str(compat)
            self.compat_version = compat_version

        def driver(self, version: str | None, text: str = PROPRIETARY) -> None:
            if version is None:
                version_file.unlink(missing_ok=True)
            else:
                version_file.write_text(text.format(v=version))

        def nvidia_smi(self, version: str) -> None:
            smi = tools / "nvidia-smi"
            smi.write_text(f"#!/bin/sh\necho {version}\n")
            smi.chmod(0o755)

        def run(self, *, ld_library_path: str | None = None, **env: str) -> tuple[str, list[str], str]:
            environment = {"PATH": str(tools), "CUDA_VERSION": "13.2.1", **env}
            if ld_library_path is not None:
                environment["LD_LIBRARY_PATH"] = ld_library_path
            done = subprocess.run([str(wrapper), "-c", SHOW, "train", "two words"], env=environment,
                                  capture_output=True, text=True, check=True)
            library_path, argv = done.stdout.splitlines()
            return library_path, ast.literal_eval(argv), done.stderr

    return Host()


@pytest.mark.parametrize("text", [PROPRIETARY, OPEN], ids=["proprietary-module", "open-module"])
@pytest.mark.parametrize("driver", ["535.183.01", "570.172.08", "580.65.06", "590.48.01"])
def test_an_older_driver_gets_the_compat_libraries_first_and_the_arguments_pass_through(host, driver, text):
    host.driver(driver, text)
    library_path, argv, stderr = host.run(ld_library_path="/usr/local/nvidia/lib:/usr/local/nvidia/lib64")
    assert library_path == f"{host.compat}:/usr/local/nvidia/lib:/usr/local/nvidia/lib64"
    assert argv == ["train", "two words"]
    assert f"NVIDIA driver {driver} is older than CUDA 13.2.1 needs" in stderr and host.compat_version in stderr


@pytest.mark.parametrize("driver", ["595.58.03", "595.71.05", "610.43.02"])
def test_a_driver_as_new_as_the_compat_libraries_runs_natively(host, driver):
    host.driver(driver, OPEN)
    assert host.run(ld_library_path="/usr/local/nvidia/lib")[:2] == ("/usr/local/nvidia/lib", ["train", "two words"])
    assert host.run()[0] == ""


def test_the_driver_comes_from_nvidia_smi_when_proc_has_none(host):
    host.driver(None)
    host.nvidia_smi("535.183.01")
    assert host.run()[0] == host.compat


def test_no_driver_no_opt_out_and_no_second_entry(host):
    host.driver(None)
    assert host.run() == ("", ["train", "two words"], "")  # a CPU host: nothing to do
    host.driver("535.183.01")
    assert host.run(TUNEYARD_CUDA_COMPAT="off")[0] == ""
    assert host.run(ld_library_path=f"/x:{host.compat}")[0] == f"/x:{host.compat}"  # already there (torchrun's workers)
