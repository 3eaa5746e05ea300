"""genbench.filelock: the one flock helper behind the cache's artifact locks,
the store's job claims and its appends."""

import os

from genbench import filelock


def test_a_held_lock_refuses_a_second_descriptor_until_released(tmp_path):
    path = tmp_path / "sub" / "a.lock"  # the folder is created
    fd = filelock.acquire(path)
    assert fd is not None and path.exists()
    assert filelock.acquire(path, wait=False) is None  # a second descriptor, even in this process
    other = filelock.acquire(tmp_path / "sub" / "b.lock", wait=False)
    assert other is not None  # another path is free
    filelock.release(other)
    filelock.release(fd)
    again = filelock.acquire(path, wait=False)
    assert again is not None
    filelock.release(again)


def test_held_releases_on_error_and_append_writes_at_the_end(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(b"first\n")
    try:
        with filelock.held(path):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    fd = filelock.acquire(path, wait=False, append=True)
    assert fd is not None  # the error released the lock
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, b"second\n")  # O_APPEND: lands after "first" despite the seek
    filelock.release(fd)
    assert path.read_bytes() == b"first\nsecond\n"
