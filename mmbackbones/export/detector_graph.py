"""A whole MMDetection detector as one ONNX graph: the preprocessed image in,
the final detections out (post-processing and NMS inside the graph).

The graph takes ``image`` (N, 3, H, W), the batch as the detector's
``data_preprocessor`` makes it (normalized, padded), and ``image_shape`` (N, 2),
each image's (height, width) before padding (``img_shape`` in MMDetection's
metainfo: boxes are clipped to it). It returns ``dets`` (N, max_per_img, 5):
(x1, y1, x2, y2, score) in the input's pixels, best first, and ``labels``
(N, max_per_img); unused rows have score 0 and label -1.

The post-processing computes what MMDetection's ``predict`` computes, step by
step and on batches: per-level top ``nms_pre`` of the (prior, class) scores
above ``score_thr``, the box decoding and clipping of the head's coder, score
factors (FCOS's centerness, YOLOv3's objectness), ``min_bbox_size``, per-class NMS
(ONNX ``NonMaxSuppression``) and the ``max_per_img`` best. Of mmcv's ``nms``
settings the graph implements ``iou_threshold``, ``class_agnostic``,
``max_num``, ``score_threshold`` and ``split_thr`` (:data:`NMS_KEYS`); any other
(``type='soft_nms'``, ``offset=1``, ...) is refused. Supported:

* dense heads on MMDetection's generic post-processing: RetinaNet-like
  (``DeltaXYWHBBoxCoder``) and FCOS-like (``DistancePointBBoxCoder``);
* ``YOLOV3Head``;
* two-stage R-CNNs: ``RPNHead`` + ``StandardRoIHead`` with a
  ``SingleRoIExtractor`` of ``RoIAlign`` and a ``ConvFCBBoxHead`` (Faster R-CNN).

Anything else, and anything with masks (Mask R-CNN), is refused with
:class:`~mmbackbones.errors.ExportError`.
"""
import math
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn.modules.utils import _pair
from torchvision.ops import roi_align

from ..errors import ExportError
from .nms import one_hot_scores, select_detections

SUPPORTED = ('RetinaNet-like and FCOS-like dense heads (DeltaXYWHBBoxCoder, '
             'DistancePointBBoxCoder), YOLOV3Head, and Faster R-CNN-like two-stage detectors '
             '(RPNHead + StandardRoIHead with SingleRoIExtractor(RoIAlign) and a ConvFCBBoxHead)')
#: the keys of a test_cfg's ``nms`` that the graph computes as mmcv's ``batched_nms`` does
NMS_KEYS = ('type', 'iou_threshold', 'class_agnostic', 'max_num', 'score_threshold',
            'split_thr', 'offset')
INPUT_NAMES = ('image', 'image_shape')
OUTPUT_NAMES = ('dets', 'labels')


def _refuse(what: str) -> ExportError:
    return ExportError(f'{what}: its post-processing cannot be exported. Supported: {SUPPORTED}')


def _name(obj) -> str:
    return type(obj).__name__


class NmsSettings(NamedTuple):
    """A test_cfg's ``nms``, with mmcv's defaults filled in."""
    iou_threshold: float
    class_agnostic: bool = False
    max_num: int = -1
    score_threshold: float = 0.0
    split_thr: int = 10000


def _nms(cfg, where: str) -> NmsSettings:
    """``cfg.nms`` as the graph computes it, or an :class:`ExportError` naming
    the setting it cannot compute."""
    nms = dict(cfg.get('nms') or {})
    if 'iou_thr' in nms:  # mmcv's deprecated name, which its nms() still renames
        nms.setdefault('iou_threshold', nms.pop('iou_thr'))
    if nms.get('type', 'nms') != 'nms' or 'iou_threshold' not in nms:
        raise _refuse(f"{where}.nms={nms} (only type='nms' with an iou_threshold: Soft-NMS "
                      f'and the other kinds rescore or merge boxes, which ONNX '
                      f'NonMaxSuppression does not)')
    unknown = sorted(set(nms) - set(NMS_KEYS))
    if unknown:
        raise _refuse(f'{where}.nms: {", ".join(f"{k}={nms[k]!r}" for k in unknown)} '
                      f'(the graph implements {", ".join(NMS_KEYS)})')
    if nms.get('offset', 0) != 0:
        raise _refuse(f"{where}.nms.offset={nms['offset']!r} (only 0: ONNX NonMaxSuppression "
                      f"measures a box as x2 - x1, without mmcv's +1 pixel)")
    return NmsSettings(float(nms['iou_threshold']), bool(nms.get('class_agnostic', False)),
                       int(nms.get('max_num', -1) or -1),
                       float(nms.get('score_threshold', 0) or 0),
                       int(nms.get('split_thr', 10000)))


def _select(boxes: Tensor, class_scores: Tensor, cfg, where: str) -> Tuple[Tensor, Tensor]:
    """NMS as ``cfg.nms`` says, then ``cfg.max_per_img``: mmcv's ``batched_nms``
    keeps its ``max_num`` best, and MMDetection the ``max_per_img`` best of those."""
    nms = _nms(cfg, where)
    max_per_img = cfg.max_per_img if nms.max_num <= 0 else min(nms.max_num, cfg.max_per_img)
    return select_detections(boxes, class_scores, nms.iou_threshold, max_per_img,
                             nms.class_agnostic, nms.split_thr, nms.score_threshold)


def _nms_pre(cfg, where: str) -> int:
    nms_pre = cfg.get('nms_pre', -1)
    if not nms_pre or nms_pre <= 0:
        raise _refuse(f'{where}.nms_pre={nms_pre} (the graph keeps a fixed number of '
                      f'candidates per level: set nms_pre, e.g. 1000)')
    return int(nms_pre)


def _min_bbox_size(cfg, where: str) -> float:
    size = cfg.get('min_bbox_size', -1)
    if size > 0:  # compared in the original image's pixels, which the graph does not see
        raise _refuse(f'{where}.min_bbox_size={size} (only 0 or unset)')
    return size


def check_exportable(detector: nn.Module) -> str:
    """The kind of post-processing ``detector`` needs (``'dense'``, ``'yolo'``,
    ``'two_stage'``), or an :class:`ExportError` naming what is not supported."""
    from mmdet.models.dense_heads import (AnchorFreeHead, AnchorHead, RPNHead,
                                          YOLOV3Head)
    from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
    from mmdet.models.roi_heads import StandardRoIHead
    from mmdet.models.roi_heads.bbox_heads import ConvFCBBoxHead
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
    name = _name(detector)
    if getattr(detector, 'with_mask', False):  # BaseDetector's: an RoI or a dense mask head
        where = 'roi_head.with_mask' if getattr(detector, 'roi_head', None) is not None \
            else 'mask_head'
        raise ExportError(f'{name} with masks ({where}): the exported graph computes boxes '
                          f'only, and would drop the masks. Exporting masks is not supported; '
                          f'supported: {SUPPORTED}')
    if getattr(detector, 'with_rpn', False) or hasattr(detector, 'roi_head'):
        rpn, roi = getattr(detector, 'rpn_head', None), getattr(detector, 'roi_head', None)
        if not isinstance(rpn, RPNHead) or type(roi) is not StandardRoIHead \
                or not isinstance(roi.bbox_head, ConvFCBBoxHead) \
                or type(roi.bbox_roi_extractor) is not SingleRoIExtractor:
            raise _refuse(f'{name} with {_name(rpn)} and {_name(roi)}')
        for layer in roi.bbox_roi_extractor.roi_layers:
            if _name(layer) != 'RoIAlign' or getattr(layer, 'pool_mode', 'avg') != 'avg':
                raise _refuse(f'{name}: RoI layer {_name(layer)} (only RoIAlign, avg)')
        if roi.bbox_head.custom_cls_channels or _name(roi.bbox_head.bbox_coder) != \
                'DeltaXYWHBBoxCoder':
            raise _refuse(f'{name}: {_name(roi.bbox_head)} with '
                          f'{_name(roi.bbox_head.bbox_coder)}')
        _check_coder(rpn.bbox_coder, f'{name}.rpn_head')
        _nms_pre(rpn.test_cfg, 'rpn test_cfg')
        _nms(rpn.test_cfg, 'rpn test_cfg')
        _min_bbox_size(rpn.test_cfg, 'rpn test_cfg')
        _nms(roi.test_cfg, 'rcnn test_cfg')
        return 'two_stage'
    head = getattr(detector, 'bbox_head', None)
    if isinstance(head, YOLOV3Head):
        _nms_pre(head.test_cfg, 'test_cfg')
        _nms(head.test_cfg, 'test_cfg')
        _min_bbox_size(head.test_cfg, 'test_cfg')
        return 'yolo'
    generic = isinstance(head, (AnchorHead, AnchorFreeHead)) and all(
        getattr(type(head), method) is getattr(BaseDenseHead, method)
        for method in ('predict_by_feat', '_predict_by_feat_single', '_bbox_post_process'))
    if not generic or getattr(head.loss_cls, 'custom_cls_channels', False):
        raise _refuse(f'{name} with {_name(head)}')
    _check_coder(head.bbox_coder, f'{name}.bbox_head')
    _nms_pre(head.test_cfg, 'test_cfg')
    _nms(head.test_cfg, 'test_cfg')
    _min_bbox_size(head.test_cfg, 'test_cfg')
    return 'dense'


def _check_coder(coder, where: str) -> None:
    if _name(coder) not in ('DeltaXYWHBBoxCoder', 'DistancePointBBoxCoder') \
            or getattr(coder, 'add_ctr_clamp', False):
        raise _refuse(f'{where}: box coder {_name(coder)}')


# ---------------------------------------------------------------- the steps

def per_prior(x: Tensor, width: int) -> Tensor:
    """(N, A * width, H, W) -> (N, H * W * A, width), MMDetection's prior order."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, width)


def top_candidates(scores: Tensor, k: int) -> Tuple[Tensor, Tensor, Tensor]:
    """The ``k`` best (prior, class) pairs of (N, M, C) ``scores``: score, prior
    and class, each (N, k). Padded with score 0 where there are fewer than ``k``
    pairs; a padding pair's prior index is at most ``M + pad_rows(k, C) - 1``."""
    num_classes = int(scores.shape[2])
    flat = scores.flatten(1)
    flat = torch.cat([flat, torch.zeros_like(flat[:, :1]).expand(-1, k)], dim=1)
    top, index = flat.topk(k, dim=1)
    return top, index // num_classes, index % num_classes


def pad_rows(k: int, num_classes: int) -> int:
    return (k - 1) // num_classes + 1


def take(rows: Tensor, index: Tensor, pad: int) -> Tensor:
    """Rows of (M, D) or (N, M, D) ``rows`` at (N, k) ``index`` -> (N, k, D);
    indices up to ``M + pad - 1`` read zero rows."""
    batched = rows.dim() == 3
    zeros = torch.zeros_like(rows[..., :1, :]).expand(*rows.shape[:-2], pad, -1) \
        if batched else rows.new_zeros(pad, rows.shape[-1])
    rows = torch.cat([rows, zeros], dim=-2)
    if not batched:
        return rows[index]
    return rows.gather(1, index.unsqueeze(-1).expand(-1, -1, rows.shape[-1]))


def clip(boxes: Tensor, image_shape: Tensor) -> Tensor:
    """Clamp (N, ..., 4) boxes to [0, w] x [0, h] of each image's (h, w)."""
    size = image_shape.flip(-1).repeat(1, 2).view(
        image_shape.shape[0], *([1] * (boxes.dim() - 2)), 4)
    return torch.minimum(boxes.clamp(min=0), size)


def decode(coder, priors: Tensor, pred: Tensor, image_shape: Tensor) -> Tensor:
    """MMDetection's ``coder.decode`` on batches, with each image's clipping."""
    if _name(coder) == 'DistancePointBBoxCoder':
        boxes = torch.stack([priors[..., 0] - pred[..., 0], priors[..., 1] - pred[..., 1],
                             priors[..., 0] + pred[..., 2], priors[..., 1] + pred[..., 3]], -1)
    else:  # DeltaXYWHBBoxCoder, the same operations in the same order
        deltas = pred * pred.new_tensor(coder.stds) + pred.new_tensor(coder.means)
        centers = (priors[..., :2] + priors[..., 2:]) * 0.5
        sizes = priors[..., 2:] - priors[..., :2]
        max_ratio = abs(math.log(16 / 1000))  # the decode default, wh_ratio_clip
        centers = centers + sizes * deltas[..., :2]
        sizes = sizes * deltas[..., 2:].clamp(min=-max_ratio, max=max_ratio).exp()
        boxes = torch.cat([centers - sizes * 0.5, centers + sizes * 0.5], dim=-1)
    return clip(boxes, image_shape) if coder.clip_border else boxes


def positive_size(boxes: Tensor, min_bbox_size: float) -> Tensor:
    if min_bbox_size < 0:
        return torch.ones_like(boxes[..., 0], dtype=torch.bool)
    return ((boxes[..., 2] - boxes[..., 0]) > min_bbox_size) \
        & ((boxes[..., 3] - boxes[..., 1]) > min_bbox_size)


def sigmoid(x: Tensor) -> Tensor:
    """The logistic function, exported as Exp and Div instead of ONNX's Sigmoid:
    ONNX Runtime's Sigmoid kernel is an approximation whose relative error grows
    past 100% below ~1e-5 (measured: tests/test_deploy_detector.py), which
    reorders the RPN's thousands of near-zero proposal scores and so changes
    which proposals NMS keeps. This form stays within 2e-7 of torch.sigmoid
    relative, and exp(-|x|) cannot overflow."""
    e = torch.exp(-x.abs())
    return torch.where(x >= 0, torch.ones_like(e), e) / (1 + e)


def class_probabilities(head, logits: Tensor) -> Tensor:
    return sigmoid(logits) if head.use_sigmoid_cls else logits.softmax(-1)[..., :-1]


def grid_priors(head, maps: Sequence[Tensor]) -> List[Tensor]:
    return head.prior_generator.grid_priors([m.shape[-2:] for m in maps],
                                            dtype=maps[0].dtype, device=maps[0].device)


# ------------------------------------------------------------ the families

def dense_detections(head, feats: Sequence[Tensor], image_shape: Tensor):
    """RetinaNet-like and FCOS-like heads (MMDetection's ``BaseDenseHead``
    post-processing)."""
    cfg = head.test_cfg
    nms_pre, score_thr = _nms_pre(cfg, 'test_cfg'), cfg.get('score_thr', 0)
    outs = head(feats)
    cls_scores, bbox_preds = outs[0], outs[1]
    factors = outs[2] if len(outs) > 2 else [None] * len(cls_scores)
    num_classes = head.num_classes
    pad = pad_rows(nms_pre, num_classes)
    boxes, scores, labels = [], [], []
    for cls, reg, factor, priors in zip(cls_scores, bbox_preds, factors,
                                        grid_priors(head, cls_scores)):
        probabilities = class_probabilities(head, per_prior(cls, head.cls_out_channels))
        score, index, label = top_candidates(probabilities, nms_pre)
        score = torch.where(score > score_thr, score, torch.zeros_like(score))
        if factor is not None:
            score = score * sigmoid(take(per_prior(factor, 1), index, pad).squeeze(-1))
        reg = take(per_prior(reg, head.bbox_coder.encode_size), index, pad)
        boxes.append(decode(head.bbox_coder, take(priors, index, pad), reg, image_shape))
        scores.append(score)
        labels.append(label)
    return _final(torch.cat(boxes, 1), torch.cat(scores, 1), torch.cat(labels, 1),
                  num_classes, cfg)


def yolo_detections(head, feats: Sequence[Tensor]):
    """``YOLOV3Head``: all levels' candidates together, objectness as score factor."""
    cfg = head.test_cfg
    nms_pre, score_thr = _nms_pre(cfg, 'test_cfg'), cfg.get('score_thr', 0)
    pred_maps = head(feats)[0]
    preds, strides = [], []
    for pred, stride in zip(pred_maps, head.featmap_strides):
        pred = per_prior(pred, head.num_attrib)
        preds.append(pred)
        strides.append(torch.ones_like(pred[0, :, 0]) * stride)
    pred = torch.cat(preds, 1)
    anchors = torch.cat(grid_priors(head, pred_maps))
    boxes = head.bbox_coder.decode(anchors, torch.cat([sigmoid(pred[..., :2]),
                                                       pred[..., 2:4]], -1),
                                   torch.cat(strides).unsqueeze(-1))
    objectness, probabilities = sigmoid(pred[..., 4]), sigmoid(pred[..., 5:])
    conf_thr = cfg.get('conf_thr', -1)
    if conf_thr > 0:  # below it a prior is no candidate
        probabilities = probabilities * (objectness >= conf_thr).unsqueeze(-1)
    score, index, label = top_candidates(probabilities, nms_pre)
    pad = pad_rows(nms_pre, head.num_classes)
    score = torch.where(score > score_thr, score, torch.zeros_like(score))
    score = score * take(objectness.unsqueeze(-1), index, pad).squeeze(-1)
    return _final(take(boxes, index, pad), score, label, head.num_classes, cfg)


def _final(boxes: Tensor, scores: Tensor, labels: Tensor, num_classes: int, cfg):
    scores = scores * positive_size(boxes, cfg.get('min_bbox_size', -1))
    return _select(boxes, one_hot_scores(scores, labels, num_classes), cfg, 'test_cfg')


def rpn_proposals(rpn, feats: Sequence[Tensor], image_shape: Tensor) -> Tuple[Tensor, Tensor]:
    """``RPNHead``'s proposals, (N, max_per_img, 4), and their scores (N,
    max_per_img), 0 where there is none: per-level top ``nms_pre``, NMS within each
    level."""
    cfg = rpn.test_cfg
    nms_pre = _nms_pre(cfg, 'rpn test_cfg')
    cls_scores, bbox_preds = rpn(feats)
    boxes, scores, levels = [], [], []
    for level, (cls, reg, priors) in enumerate(zip(cls_scores, bbox_preds,
                                                  grid_priors(rpn, cls_scores))):
        probabilities = class_probabilities(rpn, per_prior(cls, rpn.cls_out_channels))
        score, index, _ = top_candidates(probabilities, nms_pre)
        reg = take(per_prior(reg, rpn.bbox_coder.encode_size), index, nms_pre)
        boxes.append(decode(rpn.bbox_coder, take(priors, index, nms_pre), reg, image_shape))
        scores.append(score)
        levels.append(torch.full_like(index, level))
    boxes, scores = torch.cat(boxes, 1), torch.cat(scores, 1)
    scores = scores * positive_size(boxes, cfg.get('min_bbox_size', -1))
    # the levels take the place of classes: NMS within each level (class_agnostic: across)
    dets, _ = _select(boxes, one_hot_scores(scores, torch.cat(levels, 1), len(cls_scores)),
                      cfg, 'rpn test_cfg')
    return dets[..., :4], dets[..., 4]


def roi_features(extractor, feats: Sequence[Tensor], rois: Tensor) -> Tensor:
    """``SingleRoIExtractor``: each RoI pooled once, from the level its scale maps
    to. The RoIs of a level are gathered (a data-dependent count: ``NonZero`` in
    the graph, which both runtimes take) and their features scattered back into
    one static ``(num_rois, C, h, w)`` tensor, as MMDetection's extractor does."""
    scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
    levels = torch.floor(torch.log2(scale / extractor.finest_scale + 1e-6))
    levels = levels.clamp(min=0, max=len(extractor.roi_layers) - 1)
    size = extractor.roi_layers[0].output_size
    pooled = feats[0].new_zeros(rois.shape[0], feats[0].shape[1], *_pair(size))
    for level, (layer, feat) in enumerate(zip(extractor.roi_layers, feats)):
        index = torch.nonzero(levels == level).squeeze(1)
        out = roi_align(feat, rois[index], layer.output_size, layer.spatial_scale,
                        layer.sampling_ratio, layer.aligned)
        pooled = pooled.index_copy(0, index, out)
    return pooled


def two_stage_detections(detector, feats: Sequence[Tensor], image_shape: Tensor):
    """Faster R-CNN-like: RPN proposals, RoIAlign, the bbox head, per-class boxes."""
    proposals, proposal_scores = rpn_proposals(detector.rpn_head, feats, image_shape)
    roi_head = detector.roi_head
    bbox_head, cfg = roi_head.bbox_head, roi_head.test_cfg
    batch, num_proposals = proposals.shape[0], int(proposals.shape[1])
    image_index = torch.arange(batch, dtype=proposals.dtype).view(-1, 1, 1)
    rois = torch.cat([image_index.expand(-1, num_proposals, 1), proposals], -1).flatten(0, 1)
    extractor = roi_head.bbox_roi_extractor
    cls_score, bbox_pred = bbox_head(roi_features(extractor, feats[:extractor.num_inputs], rois))
    num_classes = bbox_head.num_classes
    scores = cls_score.softmax(-1)[:, :-1].reshape(batch, num_proposals, num_classes)
    num_boxes = 1 if bbox_head.reg_class_agnostic else num_classes
    deltas = bbox_pred.reshape(batch, num_proposals, num_boxes, 4)
    boxes = decode(bbox_head.bbox_coder, proposals.unsqueeze(2), deltas, image_shape)
    valid = (scores > cfg.score_thr) & (proposal_scores > 0).unsqueeze(-1)
    class_scores = (scores * valid).transpose(1, 2)  # (N, C, P)
    boxes = boxes.squeeze(2) if num_boxes == 1 else boxes.transpose(1, 2)
    return _select(boxes, class_scores, cfg, 'rcnn test_cfg')


class DetectorGraph(nn.Module):
    """``detector`` (in eval mode) with its post-processing, as one traceable
    module: ``(image, image_shape) -> (dets, labels)`` (the module docstring)."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.kind = check_exportable(detector)
        self.detector = detector.eval()

    def forward(self, image: Tensor, image_shape: Tensor) -> Tuple[Tensor, Tensor]:
        feats = self.detector.extract_feat(image)
        image_shape = image_shape.to(image.dtype)
        if self.kind == 'two_stage':
            return two_stage_detections(self.detector, feats, image_shape)
        if self.kind == 'yolo':
            return yolo_detections(self.detector.bbox_head, feats)
        return dense_detections(self.detector.bbox_head, feats, image_shape)
