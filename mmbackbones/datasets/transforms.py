"""Image loading that never lets one bad file end a long run silently."""
import logging
import os
from typing import Optional

from mmcv.transforms import LoadImageFromFile
from mmengine.logging import print_log

from ..registry import TRANSFORMS


class UnreadableImageError(RuntimeError):
    """An image that cannot be decoded, where skipping it is not allowed."""


@TRANSFORMS.register_module()
class LoadImageOrSkip(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile``, which fails on an empty or undecodable file
    with an assertion of OpenCV's that does not name it. Here:

    * ``skip=True`` (training): a warning naming the file, the path appended to
      ``record`` (one line, appended atomically, so data-loader workers share the
      file), and ``None``, so MMEngine's dataset draws another sample (refetch).
      :class:`~mmbackbones.engine.hooks.UnreadableImagesHook` stops the run past
      its limit.
    * ``skip=False`` (evaluation): :class:`UnreadableImageError` naming the file.
    """

    def __init__(self, skip: bool = False, record: Optional[str] = None, **kwargs):
        super().__init__(**kwargs)
        self.skip, self.record = skip, record

    def transform(self, results: dict) -> Optional[dict]:
        try:
            loaded = super().transform(results)
            if loaded is not None:
                return loaded
            reason = 'empty or missing'
        except Exception as err:  # OpenCV's assertion, mmcv's, a missing file, ...
            reason = f'{type(err).__name__}: {str(err).strip().splitlines()[-1]}'
        path = results.get('img_path')
        if not self.skip:
            raise UnreadableImageError(
                f'cannot read image {path} ({reason}). Find every such file with '
                f'tools/check_dataset.py; set unreadable_images.skip_in_eval=True to skip '
                f'them in evaluation')
        print_log(f'skipping unreadable image {path} ({reason}); another sample is drawn',
                  logger='current', level=logging.WARNING)
        if self.record:
            fd = os.open(self.record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f'{path}\n'.encode())
            finally:
                os.close(fd)
        return None
