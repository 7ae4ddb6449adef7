"""The input a weights file was trained on: channel order, value range, mean and
std, as one value per source (the catalog's entries and the releases name them).

Each constant is settled from the source's own configs and code, and says where.
The frameworks' own settings read into the same terms: MMEngine's data
preprocessors (:func:`from_preprocessor`: ``mean``/``std`` on 0-255 pixels,
``bgr_to_rgb``/``to_rgb`` after an OpenCV load in BGR) and Detectron2's
``MODEL.PIXEL_MEAN``/``PIXEL_STD``/``INPUT.FORMAT`` (:func:`from_detectron2`).
Two formats are the same input when their order and their mean and std on 0-255
pixels agree (:meth:`InputFormat.same_input`): torchvision's ``0.485`` is
MMPretrain's ``123.675``.
"""
import math
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

ORDERS = ('RGB', 'BGR')
SCALES = {'0-1': 255.0, '0-255': 1.0}


def _floats(values: Sequence[float], what: str) -> Tuple[float, float, float]:
    values = tuple(float(v) for v in values)
    if len(values) != 3:
        raise ValueError(f'{what} needs 3 values (one per channel), got {list(values)}')
    return values


@dataclass(frozen=True)
class InputFormat:
    """``(pixel / 255 if scale == '0-1' else pixel) - mean) / std`` per channel,
    on images in ``order``; ``mean`` and ``std`` are in that order and scale.

    Args:
        order: ``'RGB'`` or ``'BGR'``.
        scale: ``'0-1'`` or ``'0-255'``, the range ``mean`` and ``std`` are stated in.
        mean, std: per channel, as the source states them.
        label: a short name for tables (docs/weights.md prints it).
        source: where the source settles it.
    """
    order: str
    scale: str
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    label: str = ''
    source: str = ''

    def __post_init__(self):
        if self.order not in ORDERS:
            raise ValueError(f'order must be one of {ORDERS}, got {self.order!r}')
        if self.scale not in SCALES:
            raise ValueError(f'scale must be one of {sorted(SCALES)}, got {self.scale!r}')
        object.__setattr__(self, 'mean', _floats(self.mean, 'mean'))
        object.__setattr__(self, 'std', _floats(self.std, 'std'))
        if not self.label:
            object.__setattr__(self, 'label', self.describe())

    def __getitem__(self, key: str):
        # the catalog's entries held a dict before this class: entry.normalization['order']
        return getattr(self, key)

    @property
    def pixel_mean(self) -> Tuple[float, ...]:
        """The mean on 0-255 pixels, in :attr:`order`."""
        return tuple(round(v * SCALES[self.scale], 6) for v in self.mean)

    @property
    def pixel_std(self) -> Tuple[float, ...]:
        return tuple(round(v * SCALES[self.scale], 6) for v in self.std)

    def same_input(self, other: 'InputFormat') -> bool:
        close = all(math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-2) for a, b in
                    zip(self.pixel_mean + self.pixel_std, other.pixel_mean + other.pixel_std))
        return close and self.order == other.order

    def describe(self) -> str:
        """``'BGR 0-255, mean [103.53, 116.28, 123.675], std [1.0, 1.0, 1.0]'``."""
        return (f'{self.order} {self.scale}, mean {_short(self.mean)}, '
                f'std {_short(self.std)}')

    def describe_pixels(self) -> str:
        """On 0-255 pixels, as MMEngine's preprocessors and Detectron2 state it."""
        return f'{self.order}, mean {_short(self.pixel_mean)}, std {_short(self.pixel_std)}'

    def record(self) -> Dict:
        """Plain data for a checkpoint's ``meta.input`` (:func:`from_record`)."""
        return dict(order=self.order, scale=self.scale, mean=list(self.mean),
                    std=list(self.std))


def _short(values: Sequence[float]) -> str:
    return '[' + ', '.join(repr(float(v)) for v in values) + ']'


def from_record(record) -> Optional[InputFormat]:
    """A ``meta.input`` record (:meth:`InputFormat.record`), or None when it is
    not one."""
    if not isinstance(record, dict) or not {'order', 'mean', 'std'} <= set(record):
        return None
    return InputFormat(record['order'], record.get('scale', '0-255'), record['mean'],
                       record['std'], source='the checkpoint\'s meta.input')


# -- what each source trained on (the catalog's entries name these) --------------
IMAGENET_RGB = InputFormat(
    'RGB', '0-1', (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 'RGB, ImageNet mean/std',
    "torchvision's ImageClassification transform, timm's IMAGENET_DEFAULT_MEAN/STD")
#: MMPretrain's ImageNet configs state the same input on 0-255 pixels
IMAGENET_RGB_255 = InputFormat(
    'RGB', '0-255', (123.675, 116.28, 103.53), (58.395, 57.12, 57.375),
    'RGB, ImageNet mean/std',
    "MMPretrain's configs/_base_/datasets/imagenet_bs32.py data_preprocessor (to_rgb=True)")
HALF_RGB = InputFormat(
    'RGB', '0-1', (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 'RGB, mean = std = 0.5',
    "timm's pretrained_cfg of the file (mean=std=0.5)")
DETECTRON2_BGR = InputFormat(
    'BGR', '0-255', (103.53, 116.28, 123.675), (1.0, 1.0, 1.0),
    "BGR 0-255, Detectron2's mean, std 1",
    "Detectron2's defaults (detectron2/config/defaults.py: INPUT.FORMAT 'BGR', PIXEL_MEAN "
    "[103.530, 116.280, 123.675], PIXEL_STD [1.0, 1.0, 1.0]), which vovnet-detectron2's "
    "configs (Base-RCNN-VoVNet-FPN.yaml) do not override")
DARKNET_RGB = InputFormat(
    'RGB', '0-255', (0.0, 0.0, 0.0), (255.0, 255.0, 255.0), 'RGB / 255',
    "MMDetection's YOLOv3 configs (yolov3_d53_8xb8-ms-608-273e_coco.py data_preprocessor: "
    'mean 0, std 255, bgr_to_rgb=True)')

# COCO detectors' input (mmbackbones.weights.detectors)
MMDET_RGB = InputFormat(
    'RGB', '0-255', (123.675, 116.28, 103.53), (58.395, 57.12, 57.375),
    'RGB, ImageNet mean/std',
    "MMDetection's R-50 detector configs (_base_/models/retinanet_r50_fpn.py, "
    'faster-rcnn_r50_fpn.py data_preprocessor: bgr_to_rgb=True)')
MMDET_CAFFE_BGR = InputFormat(
    'BGR', '0-255', (103.53, 116.28, 123.675), (1.0, 1.0, 1.0),
    "BGR 0-255, Detectron2's mean, std 1",
    "MMDetection's caffe-style R-50 configs (fcos_r50-caffe_fpn_gn-head-center-normbbox-"
    'centeronreg-giou_1x_coco.py data_preprocessor: bgr_to_rgb=False)')
DETECTRON_BGR = InputFormat(
    'BGR', '0-255', (102.9801, 115.9465, 122.7717), (1.0, 1.0, 1.0),
    "BGR 0-255, Detectron (v1)'s mean, std 1",
    "MMDetection's fcos_r50-caffe_fpn_gn-head_1x_coco.py data_preprocessor (Detectron's "
    'caffe R-50 statistics)')

# -- the frameworks' settings in the same terms ------------------------------------
#: what an MMEngine image preprocessor does without mean/std: no normalization
NO_NORMALIZATION = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def from_preprocessor(preprocessor) -> InputFormat:
    """The input an MMEngine data preprocessor (MMDetection's
    ``DetDataPreprocessor``, MMPretrain's ``ClsDataPreprocessor``, MMEngine's
    ``ImgDataPreprocessor``), as a config dict, feeds the network. Images are
    loaded by OpenCV, in BGR: ``bgr_to_rgb`` (``to_rgb`` in MMPretrain) makes
    them RGB, and ``mean``/``std`` apply after, in the network's order."""
    preprocessor = dict(preprocessor or {})
    flip = any(bool(preprocessor.get(k)) for k in ('bgr_to_rgb', 'rgb_to_bgr', 'to_rgb'))
    mean, std = preprocessor.get('mean'), preprocessor.get('std')
    if mean is None:
        mean, std = NO_NORMALIZATION
    elif std is None:
        std = NO_NORMALIZATION[1]
    return InputFormat('RGB' if flip else 'BGR', '0-255', mean, std)


#: Detectron2's defaults (detectron2/config/defaults.py), for keys a config leaves out
DETECTRON2_DEFAULTS = dict(PIXEL_MEAN=DETECTRON2_BGR.pixel_mean,
                           PIXEL_STD=DETECTRON2_BGR.pixel_std, FORMAT='BGR')


def from_detectron2(pixel_mean=None, pixel_std=None, input_format=None
                    ) -> Optional[InputFormat]:
    """Detectron2's ``MODEL.PIXEL_MEAN``, ``MODEL.PIXEL_STD`` (0-255, in the
    order of ``INPUT.FORMAT``) and ``INPUT.FORMAT``; None (not comparable) for
    a format other than RGB or BGR (``'L'``, ``'YUV-BT.601'``)."""
    input_format = input_format or DETECTRON2_DEFAULTS['FORMAT']
    if input_format not in ORDERS:
        return None
    return InputFormat(input_format, '0-255',
                       DETECTRON2_DEFAULTS['PIXEL_MEAN'] if pixel_mean is None else pixel_mean,
                       DETECTRON2_DEFAULTS['PIXEL_STD'] if pixel_std is None else pixel_std)
