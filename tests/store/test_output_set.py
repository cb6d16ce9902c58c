"""A stage's outputs change together or not at all, whatever ends the run and wherever it ends."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from patchcore.errors import UsageError
from patchcore.store.atomic import atomic_dir, atomic_path, write_json
from patchcore.store.output_set import output_set

from helpers import REPO


def _outputs(root: Path) -> tuple[list[Path], list[Path]]:
    """An evaluate-like set: files in two folders and a folder."""
    return [root / "metrics/m.json", root / "features/model.json"], [root / "plots/masks"]


def _write(files: list[Path], folders: list[Path], tag: str) -> None:
    for path in files:
        write_json(path, {"run": tag})
    for folder in folders:
        with atomic_dir(folder) as tmp:
            with atomic_path(tmp / "a.txt") as inner:  # a file inside the folder's temporary: written in place
                inner.write_text(tag)


def _state(files: list[Path], folders: list[Path]) -> list[str]:
    return [json.loads(p.read_text())["run"] for p in files] + [(f / "a.txt").read_text() for f in folders]


def _hidden(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob(".*"))


def test_a_failure_anywhere_in_the_run_leaves_the_old_set_and_no_temporaries(tmp_path):
    files, folders = _outputs(tmp_path)
    with output_set(files, folders):
        _write(files, folders, "old")
    with pytest.raises(OSError):
        with output_set(files, folders):
            write_json(files[0], {"run": "new"})  # one output done, then the run fails
            raise OSError("disk full")
    assert _state(files, folders) == ["old"] * 3 and _hidden(tmp_path) == []
    with output_set(files, folders):
        _write(files, folders, "new")
    assert _state(files, folders) == ["new"] * 3 and _hidden(tmp_path) == []


def test_every_output_is_reserved_before_the_work_starts(tmp_path):
    files, folders = _outputs(tmp_path)
    (tmp_path / "plots").write_text("a file where a folder belongs")
    ran = []
    with pytest.raises(UsageError, match="cannot write .*plots"):
        with output_set(files, folders):
            ran.append(True)
    long_name = tmp_path / "metrics" / ("x" * 250 + ".json")  # a valid name whose temporary is too long
    with pytest.raises(UsageError, match="cannot write .*xxx.json: File name too long"):
        with output_set([long_name]):
            ran.append(True)
    assert ran == [] and not (tmp_path / "metrics").exists() and not (tmp_path / "features").exists()


def test_writing_an_undeclared_output_is_a_bug_caught_at_once(tmp_path):
    files, folders = _outputs(tmp_path)
    with pytest.raises(RuntimeError, match="not one of the stage's declared outputs"):
        with output_set(files, folders):
            write_json(tmp_path / "metrics/other.json", {})
    with pytest.raises(RuntimeError, match="not written"):
        with output_set(files, folders):
            write_json(files[0], {})
    assert _hidden(tmp_path) == [] and not (tmp_path / "metrics/other.json").exists()


KILLED_MID_COMMIT = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from test_output_set import _outputs, _write
from patchcore.store import output_set as module
files, folders = _outputs(Path(sys.argv[1]))
real, done = module._put, []
def put(tmp, target, folder):
    if done:
        os.kill(os.getpid(), signal.SIGKILL)  # after the first rename: the set is half in place
    real(tmp, target, folder)
    done.append(target)
module._put = put
with module.output_set(files, folders):
    _write(files, folders, "new")
"""


def _killed_mid_commit(root: Path) -> tuple[list[Path], list[Path]]:
    """An "old" set, then a run killed with SIGKILL after the first of its renames: the set is half in place."""
    files, folders = _outputs(root)
    with output_set(files, folders):
        _write(files, folders, "old")
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_MID_COMMIT, str(root), str(Path(__file__).parent)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO / "tests")},
    )
    assert killed.returncode == -9
    assert sorted(_state(files, folders)) == [
        "new",
        "old",
        "old",
    ]  # what a kill mid-commit leaves, until a run or reader completes it
    return files, folders


def test_a_run_killed_between_its_renames_is_finished_by_the_next_run(tmp_path):
    files, folders = _killed_mid_commit(tmp_path)
    # the next run of the stage finishes that commit before its own work, even one that then fails
    with pytest.raises(OSError):
        with output_set(files, folders):
            assert _state(files, folders) == ["new"] * 3
            raise OSError("the next run fails too")
    assert _state(files, folders) == ["new"] * 3 and _hidden(tmp_path) == []


def test_a_journal_naming_files_outside_the_set_moves_nothing(tmp_path):
    files, folders = _outputs(tmp_path)
    with output_set(files, folders):
        _write(files, folders, "old")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    planted = tmp_path / "metrics/.victim.txt.99999999.abcdefgh.tmp"
    planted.write_text("planted")
    entries = [{"tmp": planted.name, "target": "../victim.txt", "folder": False}]
    (tmp_path / "metrics/.patchcore-commit.99999999.abcd.json").write_text(json.dumps({"entries": entries}))
    with output_set(files, folders):
        _write(files, folders, "new")
    assert victim.read_text() == "keep" and _state(files, folders) == ["new"] * 3


def test_a_reader_finishes_a_killed_commit_before_it_reads(tmp_path):
    """summarize, export and predict read what evaluate wrote: right after a kill between evaluate's renames they
    must see the whole new set (settle), never new metrics beside old pictures."""
    from patchcore.store.output_set import settle

    files, folders = _killed_mid_commit(tmp_path)
    settle([files[0]])  # a reader of one file of the set: the journal beside it completes all of it
    assert _state(files, folders) == ["new"] * 3 and _hidden(tmp_path) == []
    settle(files)  # nothing pending: reading changes nothing
    assert _state(files, folders) == ["new"] * 3


def test_a_reader_refuses_a_journal_it_cannot_complete(tmp_path):
    from patchcore.store.output_set import settle

    files, folders = _outputs(tmp_path)
    with output_set(files, folders):
        _write(files, folders, "old")
    (tmp_path / "metrics/.patchcore-commit.99999999.abcd.json").write_text("{not json")
    with pytest.raises(UsageError, match="unfinished commit of a killed run"):
        settle([files[0]])
    assert _state(files, folders) == ["old"] * 3


@pytest.mark.parametrize("n_files, n_folders", [(1, 0), (0, 1), (3, 0), (2, 2)])
def test_a_commit_puts_every_output_of_the_set_in_place(tmp_path, n_files, n_folders):
    """Each output, first and last included, holds the new run's bytes after the commit."""
    files = [tmp_path / f"d{i % 2}" / f"f{i}.json" for i in range(n_files)]
    folders = [tmp_path / f"d{i % 2}" / f"g{i}" for i in range(n_folders)]
    for tag in ("old", "new"):
        with output_set(files, folders):
            _write(files, folders, tag)
        assert _state(files, folders) == [tag] * (n_files + n_folders) and _hidden(tmp_path) == []


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit, GeneratorExit])
@pytest.mark.parametrize("how", ["atomic_path", "atomic_dir", "output_set"])
def test_an_interrupt_leaves_the_old_output_and_no_temporary(tmp_path, interrupt, how):
    """Ctrl-C and sys.exit are not Exceptions: a clean-up that catches only Exception would leave its temporary."""
    files, folders = _outputs(tmp_path)
    with output_set(files, folders):
        _write(files, folders, "old")
    with pytest.raises(interrupt):
        if how == "atomic_path":
            with atomic_path(files[0]) as tmp:
                tmp.write_text('{"run": "new"}')
                raise interrupt()
        elif how == "atomic_dir":
            with atomic_dir(folders[0]) as tmp:
                (tmp / "a.txt").write_text("new")
                raise interrupt()
        else:
            with output_set(files, folders):
                _write(files, folders, "new")
                raise interrupt()
    assert _state(files, folders) == ["old"] * 3 and _hidden(tmp_path) == []
