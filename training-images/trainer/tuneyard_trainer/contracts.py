"""The committed cross-language contract files, generated from the code:
`python -m tuneyard_trainer.contracts` rewrites them; a test fails when they are stale."""

from __future__ import annotations

import json
from pathlib import Path

from .config import json_schema
from .metrics import metric_definitions

FOLDER = Path(__file__).resolve().parent.parent
GENERATORS = {"metrics.json": metric_definitions, "config.schema.json": json_schema}


def render(name: str) -> str:
    return json.dumps(GENERATORS[name](), indent=2) + "\n"


def main() -> None:
    for name in GENERATORS:
        (FOLDER / name).write_text(render(name), encoding="utf-8")
        print(f"wrote {FOLDER / name}")


if __name__ == "__main__":
    main()
