"""`python -m tuneyard_trainer train|evaluate` (the image's ENTRYPOINT; SageMaker passes `train`)."""

from __future__ import annotations

import sys
import traceback

from .sagemaker_env import STOP_EXIT_CODE, SageMakerEnv

USAGE = "usage: python -m tuneyard_trainer train|evaluate"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("train", "evaluate"):
        print(USAGE, file=sys.stderr)
        return 2
    env = SageMakerEnv.from_environ()
    env.failure_path.unlink(missing_ok=True)
    try:
        if argv[0] == "train":
            from . import train

            code = train.run(env)
        else:
            from . import evaluate

            code = evaluate.run(env)
    except Exception as err:  # every failure leaves its reason where SageMaker shows it
        traceback.print_exc()
        reason = str(err) or type(err).__name__
        env.write_failure(f"{argv[0]} failed: {type(err).__name__}: {reason}")
        return 1
    if code == STOP_EXIT_CODE:
        env.write_failure(
            f"Training stopped by SIGTERM (spot interruption or StopTrainingJob) after saving a checkpoint to "
            f"{env.checkpoints_dir}; running the job again resumes from it. Exit code {STOP_EXIT_CODE}."
        )
    elif code != 0 and not env.failure_path.exists():
        # torchrun's exit code when a worker died without a reason of its own (killed for memory, a signal)
        env.write_failure(
            f"{argv[0]} failed: the training processes exited with code {code} without a reason; see the job's "
            "log (a worker killed for memory exits with -9)."
        )
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
