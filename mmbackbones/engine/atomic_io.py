"""Atomic writes for MMEngine's local file backend.

MMEngine writes checkpoints (and the ``last_checkpoint`` pointer) by opening the
target and writing into it: a run killed mid-write leaves a truncated file that
``resume`` then fails on. Here every local write goes to a temporary file in the
same folder, is flushed to disk, and replaces the target in one ``os.replace``.
Otherwise the result is what ``open(path, 'wb')`` gives: a new file gets the
permissions the umask allows, an existing one keeps its own, and a symlinked
target is written through (the link stays a link).
"""
import os
import stat
import tempfile
from pathlib import Path
from typing import Union

from mmengine.fileio import LocalBackend, register_backend
from mmengine.fileio import io as mmengine_io


def current_umask() -> int:
    """The process umask, read without changing it where Linux tells it."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(data: Union[bytes, str], path: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
    path = os.path.realpath(os.fspath(path))  # through symlinks, as open() writes
    folder = os.path.dirname(path) or '.'
    os.makedirs(folder, exist_ok=True)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~current_umask()
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.' + os.path.basename(path) + '.',
                               suffix='.tmp')
    try:
        os.fchmod(fd, mode)  # mkstemp creates 0600
        with os.fdopen(fd, 'wb') as f:
            f.write(data.encode(encoding) if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class AtomicLocalBackend(LocalBackend):
    """MMEngine's local backend whose writes are all-or-nothing."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        atomic_write(obj, filepath)

    def put_text(self, obj: str, filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        atomic_write(obj, filepath, encoding)


def install_atomic_local_backend() -> None:
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
    # drop cached plain local backends created before this call
    for key in [k for k, v in mmengine_io.backend_instances.items()
                if type(v) is LocalBackend]:
        del mmengine_io.backend_instances[key]
