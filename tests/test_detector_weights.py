"""Public COCO detectors (#35): a whole detector's file, in its source's own
layout, loads into this repository's config of it through the one strict loader
(``load_weights``, ``load_from``/``tools/test.py``, Detectron2's ``MODEL.WEIGHTS``)
and gives the source framework's detections; named files resolve from 127.0.0.1
stand-ins; every new config builds and runs.

The source detectors are MMDetection's and Detectron2's own, built from their
stock configs, with random weights and norm statistics calibrated on the test
image (so that scores spread and nothing saturates); their files are written as
the sources publish them (MMDetection: ``{'meta', 'state_dict'}``; Detectron2's
model zoo: a pickle of numpy arrays; vovnet-detectron2: ``{'model'}`` in its keys)."""
import copy
import dataclasses
import functools
import os.path as osp
import pickle
import re
from types import SimpleNamespace

import pytest
import torch

from mmbackbones import CheckpointError, load_weights
from mmbackbones.weights.catalog import catalog
from mmbackbones.weights.detectors import DETECTORS
from detectron2_utils import needs_d2
from local_files import serving
from public_layouts import vovnet_detectron2_state
from training_utils import ROOT

#: the equality bounds of #35
SCORE_TOL, BOX_TOL = 1e-4, 1e-3
#: the test image (height, width): small, padded to 32 by both frameworks
SIZE = (64, 96)
#: the std of every conv's and linear layer's output in the random detectors:
#: logits and box deltas of that size give many boxes of many scores
OUTPUT_STD = 0.5
#: detections per image compared (with masks: each costs 4 convs at 14 x 14)
DETECTIONS, WITH_MASKS = 10, 3


# -- random detectors that detect something -----------------------------------------
def randomize(model: torch.nn.Module, run) -> torch.nn.Module:
    """Random biases and norm statistics, set on one pass of ``run(model)``: each
    norm's statistics are its input's, shifted and scaled at random; each conv
    and linear layer is rescaled on its first call to an output std of
    :data:`OUTPUT_STD`. Scores
    then spread and boxes stay in the image, so a mis-loaded tensor changes the
    detections, and equal ones cannot hide in saturated scores."""
    g = torch.Generator().manual_seed(0)

    def uniform(shape, low, high):
        return torch.rand(shape, generator=g) * (high - low) + low

    seen, hooks = set(), []

    def norm_stats(module, args):
        x = args[0].detach().double()
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3))
        module.running_mean.copy_(mean + uniform(mean.shape, -0.1, 0.1) * var.sqrt())
        module.running_var.copy_(var * uniform(var.shape, 0.5, 1.5) + 1e-3)
        if isinstance(getattr(module, 'weight', None), torch.Tensor):
            module.weight.copy_(uniform(module.weight.shape, 0.5, 1.5))
            module.bias.copy_(uniform(module.bias.shape, -0.2, 0.2))

    def unit_std(module, args, output):
        if module in seen:  # a head shared by the FPN levels: rescaled once
            return None
        seen.add(module)
        std = output.detach().std().clamp(min=1e-6) / OUTPUT_STD
        module.weight.div_(std)
        if module.bias is not None:
            module.bias.div_(std)
        return output / std

    with torch.no_grad():
        for module in model.modules():
            if all(isinstance(getattr(module, b, None), torch.Tensor)
                   for b in ('running_mean', 'running_var')):
                hooks.append(module.register_forward_pre_hook(norm_stats))
            elif isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                if module.bias is not None:
                    module.bias.copy_(uniform(module.bias.shape, -1.0, 1.0))
                hooks.append(module.register_forward_hook(unit_std))
        model.eval()
        run(model)
    for hook in hooks:
        hook.remove()
    return model


def assert_same_detections(ours, theirs, at_least: int = DETECTIONS,
                           box_tol: float = BOX_TOL) -> None:
    """``(scores, boxes, labels)`` of two detectors: as many, scores within
    :data:`SCORE_TOL` (sorted), and each box within :data:`BOX_TOL` of a box of
    the same class and score (tied scores may come in another order)."""
    (s1, b1, l1), (s2, b2, l2) = ours, theirs
    assert len(s2) >= at_least, f'the source detects {len(s2)} objects: a weak test'
    assert len(s1) == len(s2), (len(s1), len(s2))
    torch.testing.assert_close(s1.sort(descending=True).values, s2.sort(descending=True).values,
                               atol=SCORE_TOL, rtol=0)
    for score, box, label in zip(s1, b1, l1):
        same = ((s2 - score).abs() <= SCORE_TOL) & (l2 == label)
        error = (b2[same] - box).abs().amax(1).min().item() if same.any() else float('inf')
        assert error <= box_tol, f'no box of class {label} within {box_tol}: off by {error}'


def image() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randint(0, 256, (3, *SIZE), dtype=torch.uint8)


# -- MMDetection ----------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _parsed(path: str):
    from mmengine.config import Config
    if path.startswith('mmdet::'):
        import mmdet
        path = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', path[len('mmdet::'):])
    return Config.fromfile(osp.join(ROOT, path))


def mmdet_config(path: str):
    """A config of MMDetection's (``mmdet::...``) or of this repository, with no
    pretrained file, and at test time fewer candidates and detections, and no
    score threshold (both sides alike: a random detector's scores are low)."""
    cfg = copy.deepcopy(_parsed(path))
    cfg.model.backbone.init_cfg = None
    test_cfg = cfg.model.test_cfg
    if 'rpn' in test_cfg:
        test_cfg.rpn.update(nms_pre=100, max_per_img=30)
        test_cfg = test_cfg.rcnn
    test_cfg.update(score_thr=0.0, max_per_img=DETECTIONS)
    if 'nms_pre' in test_cfg:
        test_cfg.nms_pre = 100
    if 'conf_thr' in test_cfg:  # YOLOv3's objectness
        test_cfg.conf_thr = 0.0
    return cfg


def mmdet_build(path: str, **backbone):
    from detection_utils import build_detector
    cfg = mmdet_config(path)
    cfg.model.backbone.update(backbone)
    return build_detector(cfg).eval()


def mmdet_detect(model, img: torch.Tensor):
    from mmdet.structures import DetDataSample
    meta = dict(img_shape=SIZE, ori_shape=SIZE, scale_factor=(1.0, 1.0))
    with torch.no_grad():
        found = model.test_step(dict(inputs=[img], data_samples=[DetDataSample(metainfo=meta)]))
    return found[0].pred_instances.scores, found[0].pred_instances.bboxes, \
        found[0].pred_instances.labels


def mmdet_checkpoint(model) -> dict:
    """``model`` as MMDetection's model zoo publishes it: meta and state_dict."""
    return {'meta': {'mmdet_version': '2.25.0', 'CLASSES': ['x'] * 80},
            'state_dict': model.state_dict()}


#: MMDetection's stock config -> ours, and the name the published file has
MMDET_CASES = {
    'yolov3': ('mmdet::yolo/yolov3_d53_8xb8-320-273e_coco.py',
               'configs/detection/yolov3_darknet53-public_320-273e_coco.py',
               'yolov3_d53_320_273e_coco-421362b6.pth'),
    'retinanet': ('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
                  'configs/detection/retinanet_resnet50_fpn_1x_coco.py',
                  'retinanet_r50_fpn_1x_coco_20200130-c2398f9e.pth'),
    'faster-rcnn': ('mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
                    'configs/detection/faster-rcnn_resnet50_fpn_1x_coco.py',
                    'faster_rcnn_r50_fpn_1x_coco_20200130-047c8118.pth'),
    'fcos-caffe': ('mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py',
                   'configs/detection/fcos_resnet50-caffe_fpn_gn-head_1x_coco.py',
                   'fcos_r50_caffe_fpn_gn-head_1x_coco-821213aa.pth'),
}
#: our configs' FrozenBN computes x * scale + bias, MMDetection's frozen BN
#: F.batch_norm: the same function (the network check takes them as one), whose
#: different rounding random deep networks amplify past the bounds (1e-4 at the
#: deepest level); the comparison runs ours with BN, as the source
SAME_ROUNDING = {'fcos-caffe': dict(norm_cfg=dict(type='BN'))}


@pytest.fixture(scope='module')
def yolov3(tmp_path_factory):
    """MMDetection's YOLOv3 (random, calibrated), its file as published, and our
    config of it, built (unloaded)."""
    theirs_cfg, ours_cfg, name = MMDET_CASES['yolov3']
    img = image()
    theirs = randomize(mmdet_build(theirs_cfg), lambda m: mmdet_detect(m, img))
    path = tmp_path_factory.mktemp('mmdet') / name
    torch.save(mmdet_checkpoint(theirs), path)
    return SimpleNamespace(theirs=theirs, path=str(path), ours=mmdet_build(ours_cfg),
                           config=ours_cfg)


def load_from(model, checkpoint: str) -> None:
    """``load_from``/``tools/test.py CONFIG CHECKPOINT``: the Runner's loading
    hook (which reads the file as MMEngine resolves it), on a test run."""
    from mmbackbones.engine.hooks import load_into_runner
    runner = SimpleNamespace(model=model, call_hook=lambda *a, **k: None, _train_loop=None,
                             _resume=False, cfg=None, logger='current')
    load_into_runner(runner, checkpoint)
    assert runner._has_loaded


@pytest.mark.parametrize('case', sorted(MMDET_CASES))
def test_mmdetection_zoo_detectors_give_the_sources_detections(case, yolov3):
    """MMDetection's stock YOLOv3 (Darknet-53 in its layout), RetinaNet and Faster
    R-CNN (torchvision's R-50) and FCOS (caffe-style R-50) files, given to our
    configs of them: the backbone converted (or renamed), neck and heads by name.
    YOLOv3's file through ``load_from`` (which refused it: ``holds a
    Darknet(...); this model is a YOLOV3``), the others through ``load_weights``."""
    theirs_cfg, ours_cfg, name = MMDET_CASES[case]
    img = image()
    if case == 'yolov3':
        theirs, ours = yolov3.theirs, yolov3.ours
        load_from(ours, yolov3.path)
    else:
        theirs = randomize(mmdet_build(theirs_cfg), lambda m: mmdet_detect(m, img))
        ours = mmdet_build(ours_cfg, **SAME_ROUNDING.get(case, {}))
        assert load_weights(ours, mmdet_checkpoint(theirs)).loaded == len(ours.state_dict())
    assert_same_detections(mmdet_detect(ours, img), mmdet_detect(theirs, img))


def test_a_public_detector_deploys_with_the_sources_detections(yolov3, tmp_path):
    """MMDetection's stock YOLOv3 file, loaded into our config and exported with
    its post-processing (what tools/deploy.py does), in ONNX Runtime: the
    detections of MMDetection's own YOLOv3."""
    from mmdet.structures import DetDataSample
    from mmbackbones.export import Session
    from mmbackbones.export.detector import export_detector
    load_from(yolov3.ours, yolov3.path)
    img = image()
    meta = dict(img_shape=SIZE, ori_shape=SIZE, scale_factor=(1.0, 1.0))
    batch = yolov3.ours.data_preprocessor(
        dict(inputs=[img], data_samples=[DetDataSample(metainfo=meta)]), False)
    path = export_detector(yolov3.ours, str(tmp_path / 'end2end.onnx'), SIZE)
    dets, labels = Session(path, 'onnxruntime')(dict(
        image=batch['inputs'].numpy(), image_shape=torch.tensor([SIZE]).float().numpy()))
    kept = dets[0, :, 4] > 0
    ours = (torch.from_numpy(dets[0, kept, 4]), torch.from_numpy(dets[0, kept, :4]),
            torch.from_numpy(labels[0, kept]))
    # ONNX Runtime's convolutions round otherwise than PyTorch's: through Darknet-53's
    # 52 random convolutions, boxes move by up to 3e-3 px (scores stay within 1e-4)
    assert_same_detections(ours, mmdet_detect(yolov3.theirs, img), box_tol=1e-2)


def test_fine_tuning_a_public_detector_to_other_classes(yolov3):
    """A training run's ``load_from`` of MMDetection's YOLOv3 file into a 10-class
    YOLOv3: the class count is refused, naming ``load_from_reinit``; with it, the
    named layer keeps its initialisation and every other tensor loads (its
    backbone converted)."""
    from mmengine.runner import BaseLoop
    from mmbackbones.engine.hooks import load_into_runner
    from detection_utils import build_detector

    class TrainLoop(BaseLoop):
        def run(self):
            pass

    cfg = mmdet_config(yolov3.config)
    cfg.model.bbox_head.num_classes = 10
    model = build_detector(cfg)
    fresh = model.bbox_head.convs_pred[0].weight.clone()
    runner = SimpleNamespace(model=model, call_hook=lambda *a, **k: None, _resume=False,
                             _train_loop=object.__new__(TrainLoop), logger='current',
                             cfg=dict(load_from_reinit=None))
    with pytest.raises(CheckpointError, match=r"bbox_head\.convs_pred\.0\.weight \(file "
                                              r"\[255, .*model \[45, .*load_from_reinit="
                                              r"\['bbox_head\.convs_pred'\]"):
        load_into_runner(runner, yolov3.path)
    runner.cfg['load_from_reinit'] = ['bbox_head.convs_pred']
    load_into_runner(runner, yolov3.path)
    assert torch.equal(model.bbox_head.convs_pred[0].weight, fresh)
    theirs = yolov3.theirs.state_dict()
    for key, value in model.state_dict().items():
        if key.startswith(('neck.', 'bbox_head.convs_bridge')):
            assert torch.equal(value, theirs[key]), key
    assert torch.equal(model.backbone.stem[0].conv.weight, theirs['backbone.conv1.conv.weight'])


def test_what_does_not_fit_is_named(yolov3, tmp_path):
    from mmbackbones import Darknet, ResNet
    ours = mmdet_build(yolov3.config)  # its backbone is swapped below
    # another class count: the head tensors, by name, and no random weights
    state = dict(yolov3.theirs.state_dict())
    state['bbox_head.convs_pred.0.weight'] = torch.zeros(45, 1024, 1, 1)
    with pytest.raises(CheckpointError, match=r'does not fit YOLOV3.*bbox_head\.convs_pred\.0'):
        load_weights(ours, {'state_dict': state})
    # an ImageNet backbone file given for the whole detector
    backbone_only = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    with pytest.raises(CheckpointError, match=r'holds only a Darknet backbone \(mmdet:darknet53 '
                                              r'layout\), not a whole YOLOV3.*init_cfg'):
        load_weights(ours, backbone_only)
    # the network check holds: with ReLU, Darknet-53 is another network
    ours.backbone = Darknet(depth=53, out_indices=(2, 3, 4))
    with pytest.raises(CheckpointError, match=r'mmdet:darknet53 layout\) holds a Darknet with '
                                              r"act_cfg=.*LeakyReLU.*this model has act_cfg="):
        load_weights(ours, yolov3.path)
    # a caffe-style R-50 file (by its published name) into a pytorch-style ResNet:
    # refused before its keys are read
    ours.backbone = ResNet(depth=50)
    caffe = tmp_path / 'retinanet_r50_caffe_fpn_1x_coco_20200531-f11027c5.pth'
    torch.save({'state_dict': {'backbone.conv1.weight': torch.zeros(1)}}, caffe)
    with pytest.raises(CheckpointError, match=r"caffe-style ResNet.*ResNet\(style='caffe'\)"):
        load_weights(ours, str(caffe))


# -- Detectron2 -----------------------------------------------------------------------
def d2_cfg(config: str, zoo: bool = False, device: str = 'cpu'):
    """A Detectron2 config of its model zoo (``zoo``) or of ours, with no
    pretrained file, and at test time fewer candidates and detections, and no
    score threshold (both sides alike)."""
    from detectron2 import model_zoo
    from detectron2.config import get_cfg
    from mmbackbones.adapters import detectron2 as d2
    cfg = get_cfg()
    if zoo:
        cfg.merge_from_file(model_zoo.get_config_file(config))
    else:
        d2.add_mmbackbones_config(cfg)
        cfg.merge_from_file(osp.join(ROOT, config))
        cfg.MODEL.MMBACKBONES.PRETRAINED = ''
    cfg.MODEL.DEVICE = device
    cfg.MODEL.RPN.PRE_NMS_TOPK_TEST, cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 100, 30
    cfg.MODEL.RETINANET.TOPK_CANDIDATES_TEST = 100
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = cfg.MODEL.RETINANET.SCORE_THRESH_TEST = 0.0
    cfg.TEST.DETECTIONS_PER_IMAGE = WITH_MASKS if cfg.MODEL.MASK_ON else DETECTIONS
    return cfg


def d2_build(config: str, zoo: bool = False, edit=None, device: str = 'cpu'):
    from detectron2.modeling import build_model
    cfg = d2_cfg(config, zoo, device)
    if edit is not None:
        edit(cfg)
    with torch.device(device):
        return build_model(cfg).eval()


def d2_detect(model, img: torch.Tensor, exact_batch_norm: bool = False):
    """Detectron2's detections of a BGR uint8 image. ``exact_batch_norm``: with
    autograd on, so that Detectron2's FrozenBN computes ``x * scale + bias``
    (torchvision's FrozenBN, which ours use) instead of ``F.batch_norm``: the same
    function; random deep networks amplify their different rounding (1e-4 at
    res5) past the box bound."""
    batch = [dict(image=img.float(), height=SIZE[0], width=SIZE[1])]
    if exact_batch_norm:
        batch[0]['image'].requires_grad_(True)
    with torch.set_grad_enabled(exact_batch_norm):
        found = model(batch)[0]
    instances = found['instances']
    return (instances.scores.detach(), instances.pred_boxes.tensor.detach(),
            instances.pred_classes), found


def d2_zoo_file(model, path) -> str:
    """``model`` written as Detectron2's model zoo publishes (``model_final_*.pkl``)."""
    with open(path, 'wb') as f:
        pickle.dump({'model': {k: v.numpy() for k, v in model.state_dict().items()},
                     '__author__': 'Detectron2 Model Zoo'}, f)
    return str(path)


D2_CASES = {
    'retinanet': ('COCO-Detection/retinanet_R_50_FPN_3x.yaml',
                  'configs/detectron2/retinanet_resnet50_fpn_3x.yaml'),
    'mask_rcnn': ('COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml',
                  'configs/detectron2/mask_rcnn_resnet50_fpn_3x.yaml'),
}


@needs_d2
@pytest.mark.parametrize('case', sorted(D2_CASES))
def test_detectron2_zoo_detectors_give_the_sources_detections(case, tmp_path):
    """Detectron2's model zoo R-50-FPN RetinaNet and Mask R-CNN 3x files (its
    ResNet's keys, STRIDE_IN_1X1, FrozenBN without counters; pixel statistics
    and anchors as old files hold them), through ``MODEL.WEIGHTS``; into a
    pytorch-style ResNet, refused."""
    from mmbackbones.adapters.detectron2 import StrictDetectionCheckpointer
    zoo, ours_cfg = D2_CASES[case]
    img = image()
    theirs = randomize(d2_build(zoo, zoo=True), lambda m: d2_detect(m, img))
    state = theirs.state_dict()
    state['pixel_mean'] = theirs.pixel_mean  # files written before they were non-persistent
    path = d2_zoo_file(SimpleNamespace(state_dict=lambda: state), tmp_path / 'model_final.pkl')
    ours = d2_build(ours_cfg)
    StrictDetectionCheckpointer(ours).load(path)
    detections, found = d2_detect(ours, img)
    their_detections, their_found = d2_detect(theirs, img, exact_batch_norm=True)
    assert_same_detections(detections, their_detections, at_least=len(found['instances']))
    assert len(found['instances']) in (DETECTIONS, WITH_MASKS)
    if case == 'mask_rcnn':
        assert torch.equal(found['instances'].pred_masks,
                           their_found['instances'].pred_masks)
    else:  # into a pytorch-style ResNet (torchvision's): refused, naming the argument
        other = d2_build(ours_cfg, device='meta', edit=lambda cfg: setattr(
            cfg.MODEL.MMBACKBONES.ARGS, 'style', 'pytorch'))
        with pytest.raises(CheckpointError, match=r"detectron2:R-50 layout\) holds a ResNet "
                                                  r"with style='caffe'; this model has "
                                                  r"style='pytorch'"):
            StrictDetectionCheckpointer(other).load(path)


@needs_d2
def test_fine_tuning_a_detectron2_zoo_detector_to_other_classes(tmp_path):
    """``MODEL.WEIGHTS`` of Detectron2's 80-class Mask R-CNN into a 10-class one:
    refused, naming every class-dependent tensor and
    ``MODEL.MMBACKBONES.WEIGHTS_REINIT``; with that option the named layers keep
    their initialisation and every other tensor loads (the backbone converted);
    resuming the fine-tuned run's own checkpoint loads every tensor."""
    from mmbackbones.adapters.detectron2 import StrictDetectionCheckpointer
    from mmbackbones.engine.finetune import class_layers
    zoo, ours_cfg = D2_CASES['mask_rcnn']
    theirs = d2_build(zoo, zoo=True)
    path = d2_zoo_file(theirs, tmp_path / 'model_final.pkl')

    def ten_classes(cfg):
        cfg.MODEL.ROI_HEADS.NUM_CLASSES = 10

    ours = d2_build(ours_cfg, edit=ten_classes)
    layers = ['roi_heads.box_predictor.cls_score', 'roi_heads.box_predictor.bbox_pred',
              'roi_heads.mask_head.predictor']
    assert class_layers(ours) == layers
    with pytest.raises(CheckpointError, match=r"roi_heads\.box_predictor\.cls_score\.weight "
                                              r"\(file \[81, 1024\], model \[11, 1024\]\).*"
                                              r"MODEL\.MMBACKBONES\.WEIGHTS_REINIT="
                                              + re.escape(repr(layers))):
        StrictDetectionCheckpointer(ours).load(path)
    fresh = {k: v.clone() for k, v in ours.state_dict().items()}
    out = tmp_path / 'out'
    out.mkdir()
    checkpointer = StrictDetectionCheckpointer(ours, str(out), reinit=layers)
    checkpointer.resume_or_load(path, resume=True)  # nothing saved yet: MODEL.WEIGHTS
    state = theirs.state_dict()
    for key, value in ours.state_dict().items():
        if key.startswith(tuple(layers)):
            assert torch.equal(value, fresh[key]), key
        elif not key.startswith('backbone.bottom_up.'):
            assert torch.equal(value, state[key]), key
    assert torch.equal(ours.backbone.bottom_up.body.stem[0].weight,
                       state['backbone.bottom_up.stem.conv1.weight'])
    checkpointer.save('model_0000001')
    trained = {k: v.clone() for k, v in ours.state_dict().items()}
    resumed = d2_build(ours_cfg, edit=ten_classes)
    StrictDetectionCheckpointer(resumed, str(out), reinit=layers).resume_or_load(
        path, resume=True)  # the run's own checkpoint, whole
    assert all(torch.equal(v, trained[k]) for k, v in resumed.state_dict().items())


# -- vovnet-detectron2 ------------------------------------------------------------------
#: our configs of its detectors, with the depth its smallest file of the kind has
VOVNET_CASES = {'mask': ('configs/detectron2/mask_rcnn_vovnet19_fpn_ms_3x.yaml', 19),
                'panoptic': ('configs/detectron2/panoptic_fpn_vovnet39_ms_3x.yaml', 39)}


def vovnet_detectron2_file(model, depth: int, path) -> dict:
    """A detector's file as vovnet-detectron2 publishes it (Detectron2's
    checkpointer: ``{'model', 'iteration'}``): the backbone in its keys and
    values written from its spec (every tensor distinct, FrozenBN without
    counters), FPN and heads in Detectron2's keys (ours, offset so that loading
    them shows). Returns the file's tensors."""
    state = {k: v + 1 for k, v in model.state_dict().items()
             if not k.startswith('backbone.bottom_up.')}
    state.update({'backbone.bottom_up.' + k: v for k, v in vovnet_detectron2_state(depth).items()})
    torch.save({'model': state, 'iteration': 269999}, path)
    return state


@pytest.fixture(scope='module')
def vovnet_mask19(tmp_path_factory):
    """Our Mask R-CNN V2-19 config, built, and a file of vovnet-detectron2's."""
    config, depth = VOVNET_CASES['mask']
    model = d2_build(config)
    path = tmp_path_factory.mktemp('vovnet') / 'mask_V_19_eSE_ms_3x.pth'
    return SimpleNamespace(model=model, path=str(path),
                           state=vovnet_detectron2_file(model, depth, path))


def assert_loaded_in_their_keys(model, state: dict, depth: int) -> None:
    """``model`` holds ``state`` (vovnet-detectron2's keys): the backbone where
    its layout puts each tensor, every other tensor under its own name."""
    from public_layouts import D2_SPECS
    ours = model.state_dict()
    body, theirs = 'backbone.bottom_up.body.', 'backbone.bottom_up.'
    last = D2_SPECS[depth][3][2]
    for mine, their in (('stem.0.conv.weight', 'stem.stem_1/conv.weight'),
                        ('stem.1.norm.running_var', 'stem.stem_2/norm.running_var'),
                        ('stage2.0.conv.weight', 'stem.stem_3/conv.weight'),
                        (f'stage4.{last}.layers.2.norm.bias',
                         f'stage4.OSA4_{last}.layers.2.OSA4_{last}_2/norm.bias'),
                        ('stage5.1.concat_conv.conv.weight',
                         'stage5.OSA5_1.concat.OSA5_1_concat/conv.weight'),
                        ('stage3.1.ese.fc.bias', 'stage3.OSA3_1.ese.fc.bias')):
        assert torch.equal(ours[body + mine], state[theirs + their]), mine
    for key, value in state.items():
        if not key.startswith(theirs):
            assert torch.equal(ours[key], value), key


@needs_d2
@pytest.mark.parametrize('kind', sorted(VOVNET_CASES))
def test_vovnet_detectron2_detectors_load_in_their_keys(kind, vovnet_mask19, tmp_path):
    """vovnet-detectron2's Mask R-CNN and Panoptic FPN files (its VoVNet's keys
    under ``backbone.bottom_up.``; Detectron2's FPN, RPN, box, mask and semantic
    heads) load strictly into our configs of them, through ``MODEL.WEIGHTS`` and
    ``load_weights``; the configs build and detect (before loading: the file's
    spec values are no detector)."""
    from mmbackbones.adapters.detectron2 import StrictDetectionCheckpointer
    config, depth = VOVNET_CASES[kind]
    if kind == 'mask':
        model, path, state = vovnet_mask19.model, vovnet_mask19.path, vovnet_mask19.state
    else:
        model = d2_build(config)
        path = tmp_path / 'panoptic_V_39_eSE_3x.pth'
        state = vovnet_detectron2_file(model, depth, path)
    detections, found = d2_detect(model, image())
    assert len(detections[0]) == found['instances'].pred_masks.shape[0] == WITH_MASKS
    if kind == 'panoptic':
        assert found['sem_seg'].shape[-2:] == SIZE and 'panoptic_seg' in found
    StrictDetectionCheckpointer(model).load(str(path))
    assert_loaded_in_their_keys(model, state, depth)
    report = load_weights(model, str(path))
    assert report.loaded == len(model.state_dict()) and report.layout == \
        f'vovnet-detectron2:V-{depth}-eSE'


# -- by name, from 127.0.0.1 --------------------------------------------------------------
from test_weights_by_name import cache, server  # noqa: E402,F401 (fixtures)


def serve(server, monkeypatch, name: str, path: str) -> str:
    """The catalog's ``name`` pointed at a stand-in file on the local server."""
    entry = catalog()[name]
    filename = entry.cache_name()
    with open(path, 'rb') as f:
        server.files[filename] = f.read()
    monkeypatch.setitem(catalog(), name, dataclasses.replace(entry, url=server.url(filename)))
    return filename


def test_named_detectors_resolve_downloaded_once(yolov3, server, cache, monkeypatch):
    """``load_weights(detector, NAME)`` and ``load_from='mmbackbones://NAME'``, with
    a stand-in of the file served from 127.0.0.1: downloaded once into the cache;
    a name for another network refused before anything is downloaded."""
    yolo = serve(server, monkeypatch, 'mmdet/yolov3_d53_320_coco', yolov3.path)
    load_weights(yolov3.ours, 'mmdet/yolov3_d53_320_coco')
    load_from(yolov3.ours, 'mmbackbones://mmdet/yolov3_d53_320_coco')
    head = 'bbox_head.convs_pred.2.weight'
    assert torch.equal(yolov3.ours.state_dict()[head], yolov3.theirs.state_dict()[head])
    with pytest.raises(CheckpointError, match=r'mmdet/retinanet_r50_fpn_1x_coco \(https://'
                                              r'download.openmmlab.com/.*\) holds a ResNet'):
        load_weights(yolov3.ours, 'mmbackbones://mmdet/retinanet_r50_fpn_1x_coco')
    assert server.requests == {yolo: 1}
    assert sorted(p.name for p in cache.iterdir() if p.suffix == '.pth') == [yolo]


@needs_d2
def test_detectron2_model_weights_take_the_name(vovnet_mask19, server, cache, monkeypatch):
    """Detectron2's ``MODEL.WEIGHTS mmbackbones://NAME`` (its checkpointer), the
    same way."""
    from mmbackbones.adapters.detectron2 import StrictDetectionCheckpointer
    mask = serve(server, monkeypatch, 'vovnet-detectron2/mask_V_19_eSE_ms_3x',
                 vovnet_mask19.path)
    model = vovnet_mask19.model
    for _ in range(2):
        StrictDetectionCheckpointer(model).load(
            'mmbackbones://vovnet-detectron2/mask_V_19_eSE_ms_3x')
    assert_loaded_in_their_keys(model, vovnet_mask19.state, 19)
    with pytest.raises(CheckpointError, match=r'faster_V_39_eSE_ms_3x .*holds a VoVNet with '
                                              r'depth=39; this model has depth=19'):
        StrictDetectionCheckpointer(model).load('vovnet-detectron2/faster_V_39_eSE_ms_3x')
    assert server.requests == {mask: 1}


# -- the catalog and the configs --------------------------------------------------------------
def test_catalog_names_each_detector_with_address_figures_configs_and_licence():
    names = catalog()
    faster = names['vovnet-detectron2/faster_V_39_eSE_ms_3x']
    assert faster.url == 'https://dl.dropbox.com/s/dkto39ececze6l4/faster_V_39_eSE_ms_3x.pth'
    published = {  # the sources' own figures (their READMEs and metafiles)
        **{f'vovnet-detectron2/faster_V_{d}_eSE_ms_3x': f'box AP {ap}'
           for d, ap in ((19, 38.9), (39, 42.7), (57, 43.3), (99, 44.1))},
        **{f'vovnet-detectron2/mask_V_{d}_eSE_ms_3x': f'box AP {box}, mask AP {mask}'
           for d, box, mask in ((19, 40.1, 36.6), (39, 43.8, 39.3), (57, 44.2, 39.7),
                                (99, 44.9, 40.3))},
        'vovnet-detectron2/panoptic_V_39_eSE_3x': 'PQ 43.4, box AP 42.8, mask AP 38.5',
        'vovnet-detectron2/panoptic_V_57_eSE_3x': 'PQ 44.3, box AP 43.4, mask AP 39.2',
        **{f'mmdet/yolov3_d53_{tag}_coco': f'box AP {ap}'
           for tag, ap in (('320', 27.9), ('416', 30.9), ('608', 33.7), ('amp_608', 33.8))},
        'mmdet/retinanet_r50_fpn_1x_coco': 'box AP 36.5',
        'mmdet/faster-rcnn_r50_fpn_1x_coco': 'box AP 37.4',
        'detectron2/retinanet_R_50_FPN_3x': 'box AP 38.7',
        'detectron2/faster_rcnn_R_50_FPN_3x': 'box AP 40.2',
        'detectron2/mask_rcnn_R_50_FPN_3x': 'box AP 41.0, mask AP 37.2',
    }
    for name, figure in published.items():
        assert names[name].ap.startswith(figure + ' ('), name
    hosts = {'vovnet-detectron2': r'https://(dl|www)\.dropbox\.com/s/\w+/',
             'mmdet': 'https://download.openmmlab.com/mmdetection/v2.0/',
             'detectron2': 'https://dl.fbaipublicfiles.com/detectron2/'}
    for entry in DETECTORS:
        assert names[entry.name] is entry and entry.is_detector and not entry.default
        assert re.match(hosts[entry.source], entry.url), entry.url
        assert ('non-commercial' in entry.licence) == (entry.source == 'vovnet-detectron2')
        assert entry.configs, entry.name
        for config in entry.configs:  # each names its file and the figure
            text = open(osp.join(ROOT, config)).read()
            assert entry.name in text and entry.ap.split(' (')[0] in text, (config, entry.name)


def _arch(type_: str, kwargs: dict) -> dict:
    from mmbackbones.loader import NOT_ARCH_ARGS, network
    return network(type_.split('.')[-1], {k: v for k, v in kwargs.items()
                                         if k not in NOT_ARCH_ARGS}).arch_args()


def test_mmdetection_configs_build_with_the_files_network_and_input():
    """Every MMDetection config of a public detector: built (on the meta device,
    with a forward of its backbone, neck and first head, which checks their
    channels), its backbone the network of the file, its data preprocessor the
    input the file expects."""
    from mmbackbones.weights.input_format import from_preprocessor
    from detection_utils import build_detector
    for entry in DETECTORS:
        if entry.framework != 'mmdet':
            continue
        for config in entry.configs:
            cfg = mmdet_config(config)
            assert _arch(cfg.model.backbone.type, cfg.model.backbone) == \
                _arch(entry.type, entry.kwargs), config
            assert from_preprocessor(cfg.model.data_preprocessor).same_input(
                entry.normalization), config
            with torch.device('meta'):
                model = build_detector(cfg)
                head = getattr(model, 'bbox_head', None) or model.rpn_head
                head(model.extract_feat(torch.empty(1, 3, 64, 64)))


@needs_d2
def test_detectron2_configs_build_with_the_files_network_and_input():
    """Every Detectron2 config of a public detector: built (on the meta device),
    its backbone the file's network, its pixel statistics the file's input; the
    parameters of the Faster R-CNN V2-19..99 configs are vovnet-detectron2's
    ("Param." in its README, which counts 9.5 M more than Detectron2's own
    R-50-FPN Faster R-CNN has: as many more for each)."""
    from detectron2.modeling import build_model
    from mmbackbones.weights.input_format import from_detectron2

    def parameters(cfg) -> float:
        cfg.MODEL.DEVICE = 'meta'
        with torch.device('meta'):
            return sum(p.numel() for p in build_model(cfg).parameters()) / 1e6

    counted = {}
    for entry in DETECTORS:
        if entry.framework != 'detectron2':
            continue
        for config in entry.configs:
            cfg = d2_cfg(config)
            node = cfg.MODEL.MMBACKBONES
            assert _arch(node.TYPE, dict(node.ARGS)) == _arch(entry.type, entry.kwargs), config
            assert from_detectron2(cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD,
                                   cfg.INPUT.FORMAT).same_input(entry.normalization), config
            counted[entry.name] = parameters(cfg)
    r50 = parameters(d2_cfg('COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml', zoo=True))
    readme = {19: 37.6, 39: 52.6, 57: 68.9, 99: 96.9}  # R-50-FPN: 51.2
    for depth, millions in readme.items():
        assert abs((millions - counted[f'vovnet-detectron2/faster_V_{depth}_eSE_ms_3x'])
                   - (51.2 - r50)) < 0.15, depth
