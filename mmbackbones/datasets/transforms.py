"""Image loading that never lets one bad file end a long run silently, and
torchvision's TrivialAugmentWide without its per-image setup cost."""
import logging
import os
from typing import Dict, Optional, Sequence

import cv2
from mmcv.transforms import BaseTransform, LoadImageFromFile
from mmengine.logging import print_log
from PIL import Image
from torchvision import transforms as tv_transforms

from ..registry import TRANSFORMS


class UnreadableImageError(RuntimeError):
    """An image that cannot be decoded, where skipping it is not allowed."""


# What reading a bad file raises: OpenCV's assertion on empty data, a missing or
# unreadable file (OSError, Pillow's UnidentifiedImageError), simplejpeg's and our
# loaders' ValueError, Pillow's decompression-bomb guard. Anything else (a TypeError,
# a KeyError, ...) is a bug in a loader: it must end the run, not be counted as an
# unreadable image and skipped.
DECODE_ERRORS = (cv2.error, OSError, ValueError, Image.DecompressionBombError)


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

    def load(self, results: dict) -> Optional[dict]:
        """Decode ``results['img_path']`` into ``results``; raise or return None
        when it cannot be read. Subclasses that decode differently (the recipe's
        :mod:`~mmbackbones.datasets.fast_loading` transforms) override only this,
        and keep the skip-or-name-the-file handling of :meth:`transform`; they
        report a file they cannot read with one of :data:`DECODE_ERRORS`."""
        try:
            return super().transform(results)
        except AssertionError as err:  # mmcv asserts that OpenCV returned an image
            raise ValueError(str(err)) from err

    def transform(self, results: dict) -> Optional[dict]:
        try:
            loaded = self.load(results)
            if loaded is not None:
                return loaded
            reason = 'empty or missing'
        except DECODE_ERRORS as err:
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


class _MemoizedTrivialAugmentWide(tv_transforms.TrivialAugmentWide):
    """torchvision's TrivialAugmentWide, its operation table built once.

    torchvision rebuilds the table of operations and magnitude bins (14 small
    tensors, which depend only on the number of bins) on every image: a fifth
    of its time on a 176 px image. Everything else, the random draws included,
    is torchvision's own code, so the outputs are equal image for image
    (tests/test_fast_pipeline.py)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._spaces: Dict[int, dict] = {}

    def _augmentation_space(self, num_bins: int) -> dict:
        if num_bins not in self._spaces:
            self._spaces[num_bins] = super()._augmentation_space(num_bins)
        return self._spaces[num_bins]


@TRANSFORMS.register_module()
class TrivialAugmentWide(BaseTransform):
    """``torchvision/TrivialAugmentWide`` of MMPretrain (same arguments, same
    operations, magnitudes and draws from torch's generator) on the PIL image
    in ``results['img']``, faster (:class:`_MemoizedTrivialAugmentWide`)."""

    def __init__(self, num_magnitude_bins: int = 31, interpolation: str = 'nearest',
                 fill: Optional[Sequence[int]] = None):
        from torchvision.transforms import InterpolationMode
        self.augment = _MemoizedTrivialAugmentWide(
            num_magnitude_bins=num_magnitude_bins,
            interpolation=InterpolationMode(interpolation), fill=fill)

    def transform(self, results: dict) -> dict:
        results['img'] = self.augment(results['img'])
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.augment!r})'
