"""A stage's outputs as one set: written to temporaries, then put in place together or not at all.

Outputs sit in several folders (metrics/, features/, plots/), and no single rename spans
folders, so the commit is journalled: once every temporary is complete, a journal naming them
is written into each folder of the set, the renames follow, and the journals go. A run killed
before the journal leaves the old set (its temporaries are swept by the next run); one killed
during the renames leaves a journal, and the next run of the same stage finishes the renames
before it starts. Nothing a run writes is seen half-made.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from patchcore.errors import WRITE_FIXES, UsageError
from patchcore.store.atomic import STAGING, _alive, _make_parents, _prefix, _remove_empty, _umask, put_folder, sweep

_JOURNAL = ".patchcore-commit."


@dataclass
class _Output:
    target: Path
    tmp: Path
    folder: bool
    written: bool = False


def _key(path: Path) -> str:
    return os.path.abspath(path)


def _cannot(target: Path, exc: OSError) -> UsageError:
    fix = WRITE_FIXES.get(exc.errno or 0, "choose names and folders that can be written")
    return UsageError(f"cannot write {target}: {exc.strerror or exc}; {fix} (nothing was written)")


def _reserve(target: Path, folder: bool) -> Path:
    """The output's temporary, made now: a name or a folder that cannot be written fails before any work."""
    if target.is_dir() and not target.is_symlink() and not folder:
        raise UsageError(
            f"cannot write {target}: a folder is in the way; remove it and run again (nothing was written)"
        )
    if folder and (target.is_symlink() or (target.exists() and not target.is_dir())):
        raise UsageError(
            f"cannot write {target}/: a file or link is in the way; remove it and run again (nothing was written)"
        )
    sweep(target)
    try:
        if folder:
            return Path(tempfile.mkdtemp(prefix=_prefix(target), suffix=".tmp", dir=target.parent))
        fd, name = tempfile.mkstemp(prefix=_prefix(target), suffix=target.suffix + ".tmp", dir=target.parent)
    except OSError as exc:
        raise _cannot(target, exc) from None
    os.close(fd)
    return Path(name)


def _put(tmp: Path, target: Path, folder: bool) -> None:
    """Rename one finished temporary onto its output (a folder's old copy moved aside first)."""
    if not os.path.lexists(tmp):
        return  # put in place before the run was killed
    if folder:
        put_folder(tmp, target)
    else:
        os.replace(tmp, target)


def _journal_entries(journal: Path, declared: dict[str, bool] | None) -> list[tuple[Path, Path, bool]] | None:
    """A dead run's journal as (temporary, output, is-folder), or None when it is not one of this set's.

    Only outputs this stage declares (``None``: any), each with a temporary of the journal's run
    beside it, are accepted, so a journal from elsewhere cannot move files the stage does not own.
    """
    pid = journal.name[len(_JOURNAL) :].split(".", 1)[0]
    try:
        doc = json.loads(journal.read_text())
        entries = [(journal.parent / e["tmp"], journal.parent / e["target"], bool(e["folder"])) for e in doc["entries"]]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    for tmp, target, folder in entries:
        own = tmp.parent.resolve() == target.parent.resolve() and tmp.name.startswith(f".{target.name}.{pid}.")
        if not own or (declared is not None and declared.get(_key(target)) is not folder):
            return None
    return entries


def settle(read: Iterable[Path]) -> None:
    """Before a stage reads what another wrote: finish a commit that a killed run journalled beside those files.

    A run killed between its renames leaves a mixed set (a new metrics file beside an old
    roc.png) until the next run of the same stage; a reader (summarize, export, predict, serve)
    would otherwise take it as whole. The journal says which temporaries complete the set; one that
    cannot be read, or whose run is still alive, is refused instead of read around.
    """
    for folder in dict.fromkeys(Path(p).parent for p in read):
        for journal in sorted(folder.glob(_JOURNAL + "*.json")) if folder.is_dir() else []:
            pid = journal.name[len(_JOURNAL) :].split(".", 1)[0]
            if pid.isdigit() and _alive(int(pid)):
                raise UsageError(
                    f"{folder}: a run (process {pid}) is putting its outputs in place right now; run again when it has finished"
                )
            entries = _journal_entries(journal, None) if pid.isdigit() else None
            if entries is None:
                raise UsageError(
                    f"{journal}: an unfinished commit of a killed run that cannot be completed; rerun the stage that writes {folder} (dvc repro)"
                )
            _finish(entries, pid)


def recover(folders: Sequence[Path], declared: dict[str, bool]) -> None:
    """Finish the commits that dead runs of this stage began in ``folders``, and drop their unfinished journals."""
    for folder in folders:
        for journal in sorted(folder.glob(_JOURNAL + "*")) if folder.is_dir() else []:
            pid = journal.name[len(_JOURNAL) :].split(".", 1)[0]
            if not pid.isdigit() or _alive(int(pid)):
                continue
            if journal.name.endswith(".tmp"):
                journal.unlink(missing_ok=True)  # killed while writing the journal: nothing was committed
                continue
            entries = _journal_entries(journal, declared)
            if entries is None:
                continue  # another stage's (the folder is shared) or not ours: left alone
            _finish(entries, pid)


def _finish(entries: list[tuple[Path, Path, bool]], pid: str) -> None:
    """Complete a dead run's journalled commit: every rename, then its journal in each folder of the set."""
    for tmp, target, is_folder in entries:
        _put(tmp, target, is_folder)
    for parent in dict.fromkeys(target.parent for _, target, _ in entries):  # the set's folders, each holding a copy
        for copy in parent.glob(f"{_JOURNAL}{pid}.*.json"):
            copy.unlink(missing_ok=True)


def _write_journal(journal: Path, outputs: Iterable[_Output]) -> None:
    entries = [
        {
            "tmp": os.path.relpath(o.tmp, journal.parent),
            "target": os.path.relpath(o.target, journal.parent),
            "folder": o.folder,
        }
        for o in outputs
    ]
    partial = journal.with_name(journal.name + ".tmp")
    with open(partial, "w") as f:
        json.dump({"entries": entries}, f)
        f.flush()
        os.fsync(f.fileno())  # the renames must not reach the disk before the journal that can finish them
    os.replace(partial, journal)


class OutputSet:
    """The outputs one run of a stage writes; ``atomic_path`` and ``atomic_dir`` write into its temporaries."""

    def __init__(self, files: Sequence[Path], folders: Sequence[Path] = ()):
        # folders first: the files that point into them (predictions.jsonl) are renamed last
        self._outputs = {_key(Path(p)): _Output(Path(p), Path(), True) for p in folders}
        self._outputs.update({_key(Path(p)): _Output(Path(p), Path(), False) for p in files})
        self._parents = list(dict.fromkeys(o.target.parent for o in self._outputs.values()))
        self._created: list[Path] = []
        self.journalled = False

    def take(self, target: Path, folder: bool) -> Path | None:
        """The temporary for an output of the set; None for a path inside one of its folders' temporaries."""
        output = self._outputs.get(_key(Path(target)))
        if output is None:
            if any(o.folder and Path(_key(target)).is_relative_to(_key(o.tmp)) for o in self._outputs.values()):
                return None
            raise RuntimeError(f"{target} is written but is not one of the stage's declared outputs")
        if output.folder is not folder:
            raise RuntimeError(f"{target} is declared as a {'folder' if output.folder else 'file'}")
        output.written = True
        return output.tmp

    def _open(self) -> None:
        for parent in self._parents:
            try:
                self._created += _make_parents(parent)
            except OSError as exc:
                raise _cannot(parent, exc) from None
        recover(self._parents, {k: o.folder for k, o in self._outputs.items()})
        for output in self._outputs.values():
            output.tmp = _reserve(output.target, output.folder)

    def _discard(self) -> None:
        for output in self._outputs.values():
            if output.tmp.name and output.folder:
                shutil.rmtree(output.tmp, ignore_errors=True)
            elif output.tmp.name:
                output.tmp.unlink(missing_ok=True)
        _remove_empty(self._created)

    def _commit(self) -> None:
        missing = [str(o.target) for o in self._outputs.values() if not o.written]
        if missing:
            raise RuntimeError(f"declared outputs not written: {', '.join(missing)}")
        for output in self._outputs.values():
            os.chmod(output.tmp, (0o777 if output.folder else 0o666) & ~_umask())
        suffix = f"{os.getpid()}.{os.urandom(4).hex()}.json"
        journals = [parent / f"{_JOURNAL}{suffix}" for parent in self._parents]
        try:
            for journal in journals:
                _write_journal(journal, self._outputs.values())
        except BaseException:
            for journal in journals:  # no complete journal set: not committed, the old outputs stay
                journal.unlink(missing_ok=True)
                journal.with_name(journal.name + ".tmp").unlink(missing_ok=True)
            raise
        self.journalled = True
        for output in self._outputs.values():
            _put(output.tmp, output.target, output.folder)
        for journal in journals:
            journal.unlink(missing_ok=True)


@contextlib.contextmanager
def output_set(files: Sequence[Path], folders: Sequence[Path] = ()) -> Iterator[OutputSet]:
    """Reserve every output now (a bad name or folder fails before the work), commit them together at the end."""
    staged = OutputSet(files, folders)
    try:
        staged._open()
    except BaseException:
        staged._discard()
        raise
    token = STAGING.set(staged)
    try:
        yield staged
    except BaseException:
        STAGING.reset(token)
        staged._discard()
        raise
    STAGING.reset(token)
    try:
        staged._commit()
    except BaseException:
        if not staged.journalled:
            staged._discard()
        raise  # with the journal written the set is committed: the next run finishes the renames
