from .digits import CLASSES, make_digits_classification

__all__ = ['CLASSES', 'make_digits_classification']
