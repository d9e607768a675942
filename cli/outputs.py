"""Where commands write when no output is named: numbered folders under `runs/` (ignored by git), as
ultralytics does (`runs/infer`, then `runs/infer2`, `runs/infer3`...), so a README command run in a
checkout never litters it and never overwrites an earlier result."""

from __future__ import annotations

from pathlib import Path

RUNS = Path("runs")


def next_run_dir(kind: str, root: Path = RUNS) -> Path:
    """The first of root/<kind>, root/<kind>2, root/<kind>3... that does not exist yet (not created here)."""
    path, number = root / kind, 1
    while path.exists():
        number += 1
        path = root / f"{kind}{number}"
    return path
