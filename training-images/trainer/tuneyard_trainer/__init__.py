"""Tuneyard's trainer: the program every Tuneyard SageMaker training job runs (see ../README.md)."""
