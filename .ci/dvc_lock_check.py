"""Fail when `dvc repro` would run any stage: dvc.lock must match the committed params, code and data.

`dvc repro --dry --allow-missing` exits 0 whether or not a stage would run, so its exit code
checks nothing; the stages it would run are read from what it prints. Outputs that DVC caches
and a fresh clone lacks are allowed to be missing (--allow-missing); a changed dependency is not.

    python .ci/dvc_lock_check.py [project folder]
"""

from __future__ import annotations

import re
import subprocess
import sys


def stale_stages(project: str) -> tuple[list[str], str]:
    done = subprocess.run(["dvc", "repro", "--dry", "--allow-missing"], cwd=project, capture_output=True, text=True)
    text = done.stdout + done.stderr
    if done.returncode != 0:
        raise SystemExit(f"dvc repro --dry failed (exit {done.returncode}):\n{text}")
    return re.findall(r"Running stage '([^']+)'", text), text


def main() -> int:
    project = sys.argv[1] if len(sys.argv) > 1 else "."
    stages, text = stale_stages(project)
    if stages:
        print(text)
        print(
            f"dvc.lock is stale: 'dvc repro' would run {', '.join(stages)}; run 'dvc repro' and commit dvc.lock and metrics/",
            file=sys.stderr,
        )
        return 1
    print("dvc.lock is up to date: 'dvc repro' would run no stage")
    return 0


if __name__ == "__main__":
    sys.exit(main())
