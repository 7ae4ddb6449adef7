"""Post-processing that exports: ONNX ``NonMaxSuppression`` and the fixed-size
selection of the final detections around it.

Every candidate box carries a class and a score; a candidate that is out (below
the score threshold, padding) carries score 0. :func:`select_detections` runs
NMS per class (or across classes: ``class_agnostic``) and keeps the
``max_per_img`` best: ``dets`` (N, max_per_img, 5) as (x1, y1, x2, y2, score)
and ``labels`` (N, max_per_img), padded with score 0 and label -1 -- the layout
of MMDeploy's detectors.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor
from torchvision.ops import nms


class NonMaxSuppression(torch.autograd.Function):
    """ONNX's ``NonMaxSuppression``: ``boxes`` (B, K, 4) as (x1, y1, x2, y2),
    ``scores`` (B, C, K) -> the kept (batch, class, box) triples, (M, 3) int64.
    A box is suppressed when its IoU with a kept, higher-scoring box of the same
    batch and class is above ``iou_threshold`` (as in mmcv's and torchvision's
    nms); boxes scoring ``score_threshold`` or less are never kept. In PyTorch
    (and while the exporter traces) it runs torchvision's nms."""

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, max_per_class: int,
                iou_threshold: float, score_threshold: float) -> Tensor:
        kept = []
        for b in range(boxes.shape[0]):
            for c in range(scores.shape[1]):
                candidates = torch.nonzero(scores[b, c] > score_threshold).squeeze(1)
                keep = nms(boxes[b, candidates], scores[b, c, candidates], iou_threshold)
                index = candidates[keep[:max_per_class]]
                kept.append(torch.stack([torch.full_like(index, b), torch.full_like(index, c),
                                         index], dim=1))
        return torch.cat(kept) if kept else boxes.new_zeros((0, 3), dtype=torch.long)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class, iou_threshold, score_threshold):
        def constant(value, dtype):
            return g.op('Constant', value_t=torch.tensor([value], dtype=dtype))
        return g.op('NonMaxSuppression', boxes, scores, constant(max_per_class, torch.long),
                    constant(iou_threshold, torch.float), constant(score_threshold, torch.float))


def select_detections(boxes: Tensor, class_scores: Tensor, iou_threshold: float,
                      max_per_img: int, class_agnostic: bool = False,
                      split_thr: Optional[int] = None,
                      score_threshold: float = 0.0) -> Tuple[Tensor, Tensor]:
    """Per-class NMS, then the ``max_per_img`` highest scores of each image.

    ``class_scores`` is (N, C, K): candidate k's score for class c, 0 where it is
    not a candidate. ``boxes`` is (N, K, 4), one box per candidate for every class
    (dense heads, RPN), or (N, C, K, 4), a box per class (an R-CNN's bbox head).
    ``class_agnostic``: one NMS over every (class, candidate) pair, as mmcv's
    ``batched_nms`` does with ``nms=dict(class_agnostic=True)`` -- except for an
    image with ``split_thr`` or more pairs, where mmcv's ``batched_nms`` loops
    over the classes and so runs per-class NMS whatever ``class_agnostic`` says
    (the graph does the same, image by image). ``score_threshold``: pairs scoring
    that or less do not take part in NMS (mmcv's ``nms(score_threshold=...)``).
    Returns ``dets`` (N, max_per_img, 5) and ``labels`` (N, max_per_img), best
    first, padded with score 0 and label -1."""
    _, num_classes, num_candidates = class_scores.shape[:3]
    num_classes, num_candidates = int(num_classes), int(num_candidates)  # static
    per_class = boxes.dim() == 4
    pairs = num_classes * num_candidates
    splits = split_thr is not None and pairs >= split_thr  # possible for some image
    # mmcv counts the pairs that reach batched_nms, before nms' own score threshold
    count = (class_scores > 0).flatten(1).sum(1) if class_agnostic and splits else None
    if score_threshold > 0:
        class_scores = class_scores * (class_scores > score_threshold)
    survived = per_class_survivors(boxes, class_scores, iou_threshold) \
        if not class_agnostic or splits else None
    if class_agnostic:
        agnostic = agnostic_survivors(boxes, class_scores, iou_threshold)
        survived = agnostic if count is None else torch.where(
            (count >= split_thr).view(-1, 1, 1), survived, agnostic)
    scores = (class_scores * survived).flatten(1)  # (N, C * K)
    top, order = scores.topk(min(max_per_img, pairs), dim=1)
    box_index = order if per_class else order % num_candidates
    flat_boxes = boxes.flatten(1, 2) if per_class else boxes  # indexed like the scores
    picked = flat_boxes.gather(1, box_index.unsqueeze(-1).expand(-1, -1, 4))
    labels = torch.where(top > 0, order // num_candidates, torch.full_like(order, -1))
    return torch.cat([picked, top.unsqueeze(-1)], dim=-1), labels


def per_class_survivors(boxes: Tensor, class_scores: Tensor, iou_threshold: float) -> Tensor:
    """1 where a (class, candidate) pair survives NMS within its class, else 0:
    (N, C, K) like ``class_scores``."""
    num_classes, num_candidates = int(class_scores.shape[1]), int(class_scores.shape[2])
    if boxes.dim() == 4:  # one NMS problem per (image, class): a batch of N * C
        kept = NonMaxSuppression.apply(boxes.flatten(0, 1), class_scores.flatten(0, 1)[:, None],
                                       num_candidates, iou_threshold, 0.0)
        image, label, index = kept[:, 0] // num_classes, kept[:, 0] % num_classes, kept[:, 2]
    else:
        kept = NonMaxSuppression.apply(boxes, class_scores, num_candidates, iou_threshold, 0.0)
        image, label, index = kept[:, 0], kept[:, 1], kept[:, 2]
    survived = torch.zeros_like(class_scores)
    survived[image, label, index] = 1.0
    return survived


def agnostic_survivors(boxes: Tensor, class_scores: Tensor, iou_threshold: float) -> Tensor:
    """As :func:`per_class_survivors`, with one NMS over all the pairs of an
    image: a box suppresses overlapping boxes of every class."""
    num_classes, num_candidates = int(class_scores.shape[1]), int(class_scores.shape[2])
    pairs = num_classes * num_candidates
    # pair c * K + k: the box of candidate k (for class c, where boxes are per class)
    flat_boxes = boxes.flatten(1, 2) if boxes.dim() == 4 else boxes.repeat(1, num_classes, 1)
    kept = NonMaxSuppression.apply(flat_boxes, class_scores.flatten(1)[:, None], pairs,
                                   iou_threshold, 0.0)
    survived = torch.zeros_like(class_scores.flatten(1))
    survived[kept[:, 0], kept[:, 2]] = 1.0
    return survived.view_as(class_scores)


def one_hot_scores(scores: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """(N, K) scores of (N, K) labels -> (N, C, K), 0 off each candidate's class."""
    classes = torch.arange(num_classes, device=labels.device).view(1, -1, 1)
    return scores.unsqueeze(1) * (labels.unsqueeze(1) == classes).to(scores.dtype)
