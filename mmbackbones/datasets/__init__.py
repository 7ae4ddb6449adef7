from .digits import CLASSES, make_digits_classification, make_digits_detection
from .transforms import LoadImageOrSkip, UnreadableImageError

__all__ = ['CLASSES', 'make_digits_classification', 'make_digits_detection',
           'LoadImageOrSkip', 'UnreadableImageError']
