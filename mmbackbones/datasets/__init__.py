from .digits import CLASSES, make_digits_classification, make_digits_detection
from .fast_loading import (DecodeRandomResizedCrop, DecodeResizeCenterCrop,
                           random_resized_crop_box)
from .transforms import LoadImageOrSkip, UnreadableImageError

__all__ = ['CLASSES', 'make_digits_classification', 'make_digits_detection',
           'LoadImageOrSkip', 'UnreadableImageError', 'DecodeRandomResizedCrop',
           'DecodeResizeCenterCrop', 'random_resized_crop_box']
