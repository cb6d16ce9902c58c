"""A failed write names the output it was writing: never no file, never the user's input it copied."""

import errno
import os

import pytest

from patchcore.errors import write_error
from patchcore.store.atomic import atomic_dir, atomic_path


def test_a_failed_copy_names_the_file_written_not_its_source(tmp_path):
    # shutil's fast copy reports the source first and the destination second
    exc = OSError(
        errno.ENOSPC, os.strerror(errno.ENOSPC), "/home/user/parts/001.png", None, "data/mine/widget/train/good/001.png"
    )
    message = write_error(exc)
    assert message is not None and "data/mine/widget/train/good/001.png" in message and "/home/user" not in message


def test_a_write_that_names_no_file_is_given_the_outputs_name(tmp_path):
    target = tmp_path / "metrics.json"
    with pytest.raises(OSError) as caught:
        with atomic_path(target):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what write() raises on a full disk
    assert (
        write_error(caught.value)
        == f"cannot write {target}: No space left on device; free space on that disk and run again"
    )
    with pytest.raises(OSError) as caught:
        with atomic_dir(tmp_path / "masks") as folder:
            with atomic_path(folder / "a.png"):
                raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
    message = write_error(caught.value)
    assert (
        message is not None and f"cannot write {tmp_path / 'masks' / 'a.png'}:" in message
    )  # the folder's name, not its temporary's
    assert sorted(os.listdir(tmp_path)) == []


def test_an_error_that_is_no_write_error_keeps_its_own_story(tmp_path):
    with pytest.raises(OSError) as caught:
        with atomic_path(tmp_path / "train.h5"):
            raise OSError("image file is truncated")  # a decoder's OSError: no errno, and not about the output
    assert caught.value.filename is None and write_error(caught.value) is None
