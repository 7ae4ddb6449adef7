"""The recipe's fast image loading: decode only as much as the output needs.

The exact pipeline decodes every JPEG at full size, crops it and resizes it
with Pillow. Here the crop is drawn from the size in the file's header first
(torchvision's RandomResizedCrop distribution, on the same torch generator and
in the same order of draws, so a seeded run draws the same boxes), then the
JPEG is decoded at 1/2, 1/4 or 1/8 scale (libjpeg-turbo's DCT scaling) as far
as the crop keeps at least the output size, and the crop is resized, bilinear
with antialiasing as Pillow does it: by torch's uint8 kernel (equal to Pillow's
within rounding, about 2x faster) when its box is in whole pixels, by Pillow
when its edges are fractional at the reduced scale.

Colour JPEGs are decoded by simplejpeg (libjpeg-turbo): pixel for pixel what
OpenCV's ``imdecode`` gives (mmcv's ``LoadImageFromFile``, the exact pipeline;
tested), in either channel order, about 10 % faster than OpenCV and 25 % faster
than Pillow on ImageNet-sized photos, at reduced scales too (docs/speed.md).
Everything else (other formats, CMYK and grayscale JPEGs, EXIF-rotated or
damaged ones) is decoded by OpenCV at full size, as mmcv does. The size comes
from a parse of the JPEG markers. Images stay uint8 (normalization is the data
preprocessor's, per batch on the device).
"""
import functools
import io
import math
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
import simplejpeg
import torch
import torch.nn.functional as F
from mmengine import fileio
from PIL import Image, UnidentifiedImageError

from ..registry import TRANSFORMS
from .transforms import LoadImageOrSkip

#: EXIF orientations that turn the image by 90 degrees (OpenCV applies them)
TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
#: JPEG start-of-frame markers (baseline, extended, progressive, lossless...):
#: all but DHT (C4), JPG (C8) and DAC (CC) in C0..CF
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_frame(data: bytes) -> Optional[Tuple[int, int, int, bool]]:
    """``(width, height, components, has_exif)`` from a JPEG's markers up to its
    frame header, or None when ``data`` is not a JPEG this parse understands.
    A few microseconds: Pillow's ``Image.open`` takes 10x longer, which counts
    at a millisecond per image."""
    if data[:2] != b'\xff\xd8':
        return None
    pos, end, has_exif = 2, len(data), False
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], 'big')
        if marker in SOF_MARKERS:
            if pos + 10 > end:
                return None
            height = int.from_bytes(data[pos + 5:pos + 7], 'big')
            width = int.from_bytes(data[pos + 7:pos + 9], 'big')
            return (width, height, data[pos + 9], has_exif) if width and height else None
        if marker == 0xE1 and data[pos + 4:pos + 10] == b'Exif\x00\x00':
            has_exif = True
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame
            return None
        pos += 2 + length
    return None


def read_header(data: bytes) -> Optional[Tuple[int, int, bool]]:
    """``(width, height, scalable)`` of the image in ``data`` as OpenCV would
    decode it (EXIF orientation applied), from its header only, or None when
    neither our JPEG parse nor Pillow recognises it (OpenCV may still decode it).
    ``scalable``: a 3-component (colour) JPEG without EXIF rotation, which
    simplejpeg decodes, at reduced scales too; others are decoded at full size
    by OpenCV."""
    frame = jpeg_frame(data)
    if frame is not None and not frame[3]:
        width, height, components, _ = frame
        return width, height, components == 3
    try:  # other formats, and JPEGs with EXIF (its orientation) or odd markers
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    width, height = image.size
    orientation = 1
    if 'exif' in image.info:
        try:
            orientation = image.getexif().get(0x0112, 1)
        except Exception:  # a broken EXIF block: OpenCV ignores it too
            pass
    if orientation in TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    scalable = image.format == 'JPEG' and image.mode == 'RGB' and orientation in (None, 1)
    return width, height, scalable


@functools.lru_cache(maxsize=None)
def _log_bounds(ratio: Tuple[float, float]) -> Tuple[float, float]:
    # in float32, as torchvision computes them (the draws depend on it)
    low, high = torch.log(torch.tensor([float(r) for r in ratio])).tolist()
    return low, high


def random_resized_crop_box(width: int, height: int,
                            scale: Sequence[float] = (0.08, 1.0),
                            ratio: Sequence[float] = (3 / 4, 4 / 3),
                            attempts: int = 10,
                            generator: Optional[torch.Generator] = None
                            ) -> Tuple[int, int, int, int]:
    """``(top, left, height, width)`` of a random crop of a ``width`` x ``height``
    image, from the distribution of torchvision's ``RandomResizedCrop``: area
    uniform in ``scale`` x the image's area, aspect ratio log-uniform in
    ``ratio``, position uniform; after ``attempts`` misses the central crop
    clamped to ``ratio``. It draws the same numbers in the same order and
    precision (float32 tensors) from torch's generator (global by default) as
    ``RandomResizedCrop.get_params``, so for a seeded generator the boxes are
    equal (tests/test_fast_pipeline.py)."""
    area = width * height
    log_low, log_high = _log_bounds(tuple(ratio))
    for _ in range(attempts):
        area_fraction = torch.empty(1).uniform_(scale[0], scale[1], generator=generator)
        target = area * area_fraction.item()
        aspect = torch.exp(torch.empty(1).uniform_(log_low, log_high,
                                                   generator=generator)).item()
        crop_w = int(round(math.sqrt(target * aspect)))
        crop_h = int(round(math.sqrt(target / aspect)))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(torch.randint(0, height - crop_h + 1, (1, ), generator=generator))
            left = int(torch.randint(0, width - crop_w + 1, (1, ), generator=generator))
            return top, left, crop_h, crop_w
    # no draw fitted (a very elongated image): the largest central crop whose
    # aspect ratio is within the range
    if width / height < min(ratio):
        crop_w, crop_h = width, int(round(width / min(ratio)))
    elif width / height > max(ratio):
        crop_w, crop_h = int(round(height * max(ratio))), height
    else:
        crop_w, crop_h = width, height
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def dct_factor(region_h: int, region_w: int, out_h: int, out_w: int) -> int:
    """The largest DCT scale-down (8, 4, 2 or 1) that leaves a ``region_h`` x
    ``region_w`` region at least ``out_h`` x ``out_w``, so the final resize still
    only shrinks (or enlarges exactly as much as at full scale)."""
    for factor in (8, 4, 2):
        if region_h >= factor * out_h and region_w >= factor * out_w:
            return factor
    return 1


def decode(data: bytes, rgb: bool = False) -> np.ndarray:
    """The uint8 image of ``data`` decoded at full size by OpenCV, as mmcv's
    ``LoadImageFromFile`` (``cv2.IMREAD_COLOR``: EXIF orientation applied, CMYK
    and grayscale made colour, damaged data decoded as far as it goes); BGR, or
    RGB with ``rgb``."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError('OpenCV cannot decode it')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if rgb else image


def decode_scaled(data: bytes, width: int, height: int, factor: int,
                  rgb: bool = False) -> Optional[np.ndarray]:
    """The colour JPEG ``data`` (``width`` x ``height``) decoded by simplejpeg
    at 1/``factor`` scale (DCT scaling: ceil(size / factor) pixels covering the
    image's extent / factor), BGR or RGB; None where simplejpeg reports damage
    (OpenCV's full decode then does what the exact pipeline would)."""
    try:
        return simplejpeg.decode_jpeg(data, colorspace='RGB' if rgb else 'BGR',
                                      min_height=-(-height // factor),
                                      min_width=-(-width // factor))
    except ValueError:
        return None


def resize_region(image: np.ndarray, box: Tuple[float, float, float, float],
                  size: Tuple[int, int]) -> np.ndarray:
    """The ``(top, left, bottom, right)`` region of an H x W x 3 uint8 ``image``
    resized to ``size`` (height, width), bilinear with antialiasing (Pillow's
    filter), uint8 out.

    A box of whole pixels (every full-scale crop) goes through torch's uint8
    antialiased kernel, about 2x faster than Pillow's here and equal to it
    within rounding; a box with fractional edges (a crop mapped to a reduced DCT
    scale) through Pillow's resize, which takes them: rounding them to whole
    pixels would shift the crop by up to half a reduced pixel (-8 dB PSNR)."""
    top, left, bottom, right = box
    height, width = image.shape[:2]
    if not all(float(v).is_integer() for v in box):
        # Pillow treats the channels alike, so BGR stays BGR; np.array: a writable copy
        resized = Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR, box=(
            max(left, 0), max(top, 0), min(right, width), min(bottom, height)))
        return np.array(resized)
    top, left = min(max(int(top), 0), height - 1), min(max(int(left), 0), width - 1)
    bottom, right = max(min(int(bottom), height), top + 1), max(min(int(right), width), left + 1)
    # the region as a dense channels-last N x C x H x W tensor (one copy of the
    # region): torch's uint8 antialiased kernel is fastest on it and answers in
    # channels-last, which is the H x W x C array we return, without a copy.
    # (Left as a strided view, the kernel answers in NCHW: slower, plus a copy.)
    region = torch.from_numpy(image).permute(2, 0, 1)[None, :, top:bottom, left:right]
    out = F.interpolate(region.contiguous(memory_format=torch.channels_last),
                        size=tuple(size), mode='bilinear', antialias=True, align_corners=False)
    # (ascontiguousarray: a no-op unless a torch version answers in another layout)
    return np.ascontiguousarray(out[0].permute(1, 2, 0).numpy())


def _check_interpolation(interpolation: str) -> None:
    if interpolation != 'bilinear':
        raise ValueError(f'interpolation {interpolation!r} is not supported by the fast '
                         f"loading transforms: only 'bilinear' (the recipe's); use the "
                         f'exact pipeline (MMPretrain transforms) for others')


class _DecodeBytes(LoadImageOrSkip):
    """Shared by the fast transforms: the file's bytes through MMEngine's file
    backends (``backend_args`` as mmcv's loader), header, decode; an unreadable
    file is skipped in training or named in evaluation by
    :class:`~mmbackbones.datasets.LoadImageOrSkip`."""

    def __init__(self, skip: bool = False, record: Optional[str] = None,
                 backend_args: Optional[dict] = None):
        super().__init__(skip=skip, record=record, backend_args=backend_args)

    def read(self, results: dict) -> Tuple[bytes, int, int, bool]:
        """``(data, width, height, scalable)``: the file's bytes and header;
        where no header could be parsed (a format only OpenCV knows) width and
        height are 0 and the size comes from the decode."""
        path = results['img_path']
        if self.backend_args is None and '://' not in str(path):
            # a local file: MMEngine's backend lookup would cost 0.04 ms, twice the
            # header parse and the box draw together
            with open(path, 'rb') as f:
                data = f.read()
        else:
            data = fileio.get(path, backend_args=self.backend_args)
        if not data:
            raise ValueError('empty file')
        header = read_header(data)
        return (data, *header) if header is not None else (data, 0, 0, False)

    @staticmethod
    def scaled(data: bytes, width: int, height: int, scalable: bool, factor: int,
               rgb: bool = False) -> Tuple[np.ndarray, float, float]:
        """The image (BGR, or RGB with ``rgb``) decoded at 1/``factor`` scale
        where it is ``scalable``, else at full size, and the scale of each axis
        (x, y) relative to the header's ``width`` x ``height``: 1/``factor``
        exactly when decoded as expected; otherwise (OpenCV's decode of an image
        the header parse misread) the boxes follow the decoded size."""
        image = decode_scaled(data, width, height, factor, rgb) if scalable else None
        if image is not None and image.shape[:2] == (-(-height // factor),
                                                     -(-width // factor)):
            return image, 1 / factor, 1 / factor
        image = decode(data, rgb)
        return image, image.shape[1] / (width or image.shape[1]), \
            image.shape[0] / (height or image.shape[0])


@TRANSFORMS.register_module()
class DecodeRandomResizedCrop(_DecodeBytes):
    """Load, RandomResizedCrop and resize in one step, decoding at a reduced
    scale where the crop allows (module doc). Same arguments as MMPretrain's
    ``RandomResizedCrop`` (``scale`` is the output size; only bilinear), plus
    ``skip``/``record`` of :class:`~mmbackbones.datasets.LoadImageOrSkip`.
    Gives ``img`` (``scale`` x ``scale`` x 3 uint8 BGR, or with ``to_pil`` an
    RGB PIL image for the torchvision transforms that follow: one conversion of
    the small output instead of a BGR array converted there), ``img_shape`` and
    ``ori_shape`` (the file's size)."""

    def __init__(self, scale: int, crop_ratio_range: Tuple[float, float] = (0.08, 1.0),
                 aspect_ratio_range: Tuple[float, float] = (3 / 4, 4 / 3),
                 max_attempts: int = 10, interpolation: str = 'bilinear',
                 to_pil: bool = False, skip: bool = False, record: Optional[str] = None,
                 backend_args: Optional[dict] = None):
        super().__init__(skip=skip, record=record, backend_args=backend_args)
        self.to_pil = to_pil
        _check_interpolation(interpolation)
        if not (0 < crop_ratio_range[0] <= crop_ratio_range[1] <= 1):
            raise ValueError(f'crop_ratio_range must be within (0, 1], got {crop_ratio_range}')
        if not (0 < aspect_ratio_range[0] <= aspect_ratio_range[1]):
            raise ValueError(f'aspect_ratio_range must be increasing and positive, got '
                             f'{aspect_ratio_range}')
        self.scale = int(scale)
        self.crop_ratio_range = tuple(crop_ratio_range)
        self.aspect_ratio_range = tuple(aspect_ratio_range)
        self.max_attempts = max_attempts

    def decode_crop(self, results: dict) -> Tuple[np.ndarray, Tuple[float, ...],
                                                  Tuple[int, int]]:
        """Read, draw the crop, decode: ``(image, crop box in its pixels as
        (top, left, bottom, right), the file's (height, width))``."""
        data, width, height, scalable = self.read(results)
        image = None
        if not width:  # no header (a format only OpenCV knows): the size from its decode
            image = decode(data, rgb=self.to_pil)
            height, width = image.shape[:2]
        top, left, crop_h, crop_w = random_resized_crop_box(
            width, height, self.crop_ratio_range, self.aspect_ratio_range, self.max_attempts)
        sx = sy = 1.0
        if image is None:
            factor = dct_factor(crop_h, crop_w, self.scale, self.scale) if scalable else 1
            # RGB straight from the decoder when PIL (RGB) is asked: no conversion
            image, sx, sy = self.scaled(data, width, height, scalable, factor, rgb=self.to_pil)
        box = (top * sy, left * sx, (top + crop_h) * sy, (left + crop_w) * sx)
        return image, box, (height, width)

    def resize_crop(self, image: np.ndarray, box: Tuple[float, ...]):
        """The crop at the output size: BGR array, or RGB PIL image with ``to_pil``
        (``image`` is then RGB already)."""
        crop = resize_region(image, box, (self.scale, self.scale))
        return Image.fromarray(crop) if self.to_pil else crop

    def load(self, results: dict) -> dict:
        image, box, ori_shape = self.decode_crop(results)
        results['img'] = self.resize_crop(image, box)
        results['img_shape'] = (self.scale, self.scale)
        results['ori_shape'] = ori_shape
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(scale={self.scale}, crop_ratio_range='
                f'{self.crop_ratio_range}, aspect_ratio_range={self.aspect_ratio_range}, '
                f'to_pil={self.to_pil}, skip={self.skip})')


def resize_edge_size(width: int, height: int, short: int) -> Tuple[int, int]:
    """``(width, height)`` with the short edge ``short``, the other truncated
    like MMPretrain's ``ResizeEdge(edge='short')``."""
    if width < height:
        return short, int(short * height / width)
    return int(short * width / height), short


@TRANSFORMS.register_module()
class DecodeResizeCenterCrop(_DecodeBytes):
    """Load, resize the short edge to ``resize`` and take the central
    ``crop_size`` square in one step (MMPretrain's ``ResizeEdge`` +
    ``CenterCrop``, same sizes and offsets), decoding at a reduced scale when
    the image is at least twice ``resize`` on its short edge. Gives ``img``
    (``crop_size`` x ``crop_size`` x 3 uint8 BGR), ``img_shape``, ``ori_shape``."""

    def __init__(self, resize: int, crop_size: int, interpolation: str = 'bilinear',
                 skip: bool = False, record: Optional[str] = None,
                 backend_args: Optional[dict] = None):
        super().__init__(skip=skip, record=record, backend_args=backend_args)
        _check_interpolation(interpolation)
        if crop_size > resize:
            raise ValueError(f'crop_size {crop_size} exceeds the resized short edge {resize}')
        self.resize, self.crop_size = int(resize), int(crop_size)

    def load(self, results: dict) -> dict:
        data, width, height, scalable = self.read(results)
        short = min(width, height)
        factor = dct_factor(short, short, self.resize, self.resize) if scalable else 1
        image, sx, sy = self.scaled(data, width, height, scalable, factor)
        # the exact pipeline's resize target, from the full-size image's size;
        # the whole image is resized (only the crop is kept)
        if factor > 1 and (sx, sy) == (1 / factor, 1 / factor):
            box = (0, 0, height * sy, width * sx)  # the image's extent at the reduced scale
        else:  # full size: its own size (as OpenCV made it)
            width, height = image.shape[1], image.shape[0]
            box = (0, 0, height, width)
        new_w, new_h = resize_edge_size(width, height, self.resize)
        resized = resize_region(image, box, (new_h, new_w))
        crop = self.crop_size
        top, left = int(round((new_h - crop) / 2)), int(round((new_w - crop) / 2))
        results['img'] = np.ascontiguousarray(resized[top:top + crop, left:left + crop])
        results['img_shape'] = (crop, crop)
        results['ori_shape'] = (height, width)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(resize={self.resize}, crop_size={self.crop_size}, '
                f'skip={self.skip})')
