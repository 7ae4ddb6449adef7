"""Exported files appear whole or not at all."""
import os
import os.path as osp
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def written_whole(path: str, suffix: str = '') -> Iterator[str]:
    """Yield a path beside ``path`` to write to (ending in ``suffix``, for
    writers that pick the format by extension); on success it becomes ``path``,
    on any error it is removed."""
    tmp = f'{path}.{os.getpid()}.part{suffix}'
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
