"""Running a `dvc ... --json` command and reading its answer; a failure is one line naming the command."""

from __future__ import annotations

import json
import shutil
import subprocess

from patchcore.errors import UsageError


def _run_json(command: list[str], shown: str, not_json: str) -> object:
    """The JSON a command prints; a failure is one line with the command's own last message."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        said = [line for line in done.stderr.splitlines() if line.strip()]
        raise UsageError(f"'{shown}' failed (exit {done.returncode}): {said[-1] if said else 'no message'}")
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise UsageError(not_json) from None


def dvc_json(*args: str) -> object:
    """The parsed JSON that ``dvc <args> --json`` prints (run in the current folder, the project's root)."""
    command = ["dvc", *args, "--json"]
    shown = " ".join(command)
    if shutil.which("dvc") is None:
        raise UsageError(f"'{shown}': dvc is not on PATH; install the project (pip install -e .) in this environment")
    return _run_json(command, shown, f"'{shown}' printed no JSON; run it by hand to see why")


def committed_json(rev: str, path: str) -> object:
    """A JSON file as committed in ``rev`` (an experiment's commit holds its cache: false metrics whole)."""
    return _run_json(
        ["git", "show", f"{rev}:{path}"],
        f"git show {rev[:12]}:{path}",
        f"{path} in {rev[:12]} is not JSON; rerun that experiment",
    )
