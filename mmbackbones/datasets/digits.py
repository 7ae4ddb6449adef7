"""Embedded demo data made from scikit-learn's digits (1,797 real 8x8 handwritten
digits that ship with scikit-learn), so the main job runs with no download."""
import os
import os.path as osp
import shutil
import tempfile
from typing import Dict

import numpy as np
from PIL import Image

CLASSES = tuple(f'digit{i}' for i in range(10))
VAL_EVERY = 5  # every 5th digit (in scikit-learn's order) is validation: fixed split
MARKER = '.complete'


def digit_images(size: int):
    """``(images uint8 N x size x size x 3, labels)``: white ink on black, upscaled."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = []
    for pixels in digits.images:  # values 0..16
        gray = Image.fromarray(np.uint8(np.round(pixels * (255 / 16))), mode='L')
        images.append(np.asarray(gray.resize((size, size), Image.BICUBIC).convert('RGB')))
    return np.stack(images), digits.target


def make_digits_classification(root: str, size: int = 64) -> Dict[str, int]:
    """Write ``root/{train,val}/digitK/NNNN.jpg`` (ImageNet's folder layout) once.

    Idempotent: a complete tree (marked by ``root/.complete``) is left alone; an
    incomplete one is rebuilt in a temporary folder and moved into place.
    Returns the number of images per split.
    """
    if osp.exists(osp.join(root, MARKER)):
        return {split: sum(len(files) for _, _, files in os.walk(osp.join(root, split)))
                for split in ('train', 'val')}
    images, labels = digit_images(size)
    parent = osp.dirname(osp.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix='.digits-')
    counts = {'train': 0, 'val': 0}
    for index, (image, label) in enumerate(zip(images, labels)):
        split = 'val' if index % VAL_EVERY == 0 else 'train'
        folder = osp.join(tmp, split, CLASSES[label])
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(image).save(osp.join(folder, f'{index:04d}.jpg'), quality=95)
        counts[split] += 1
    open(osp.join(tmp, MARKER), 'w').close()
    if osp.exists(root):
        shutil.rmtree(root)
    os.replace(tmp, root)
    return counts
