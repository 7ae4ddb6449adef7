from .digits import CLASSES, make_digits_classification, make_digits_detection

__all__ = ['CLASSES', 'make_digits_classification', 'make_digits_detection']
