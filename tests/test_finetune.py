"""Fine-tuning a detector to other classes: ``load_from`` with ``load_from_reinit``
re-initialises exactly the named tensors and loads every other one strictly."""
import copy
import glob
import logging
import math
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from mmbackbones import CheckpointError
from mmbackbones.checkpoint import load_checkpoint
from mmbackbones.engine.finetune import class_layers, fine_tune_keys
from mmbackbones.loader import Source, load_source
from detection_utils import CLASSES, build_detector, small_trainable
from training_utils import ROOT

sys.path.insert(0, osp.join(ROOT, 'tools'))
RETINANET = osp.join(ROOT, 'configs', 'detection', 'retinanet_vovnet39_fpn_1x_coco.py')
THREE = CLASSES[:3]
#: RetinaHead's class-score bias at initialisation: the prior probability 0.01
PRIOR_BIAS = -math.log((1 - 0.01) / 0.01)


def small_retinanet(det_root: str, work_dir: str, iters: int, classes=CLASSES) -> Config:
    """The small, fast RetinaNet of detection_utils on ``classes`` of the demo set
    (MMDetection's CocoDataset and CocoMetric keep only their annotations)."""
    cfg = small_trainable(Config.fromfile(RETINANET), det_root, iters=iters,
                          work_dir=work_dir)
    cfg.model.bbox_head.num_classes = len(classes)
    for loader in ('train_dataloader', 'test_dataloader'):
        cfg[loader].dataset.metainfo = dict(classes=tuple(classes))
    return cfg


@pytest.fixture(scope='module')
def ten_and_three(tmp_path_factory):
    """A 10-class RetinaNet's weights and a fresh 3-class one (no data needed)."""
    work = str(tmp_path_factory.mktemp('finetune'))
    torch.manual_seed(0)
    ten = build_detector(small_retinanet('unused', work, 1)).state_dict()
    return ten, build_detector(small_retinanet('unused', work, 1, THREE))


def logger_of(caplog):
    caplog.set_level(logging.INFO, logger='test_finetune')
    return logging.getLogger('test_finetune')


def test_a_class_count_change_names_the_tensors_and_the_option(ten_and_three):
    ten, three = ten_and_three
    assert class_layers(three) == ['bbox_head.retina_cls']
    with pytest.raises(CheckpointError) as err:
        fine_tune_keys(three, {'state_dict': ten}, None, 'coco.pth')
    message = str(err.value)
    # 9 anchors x 10 classes in the file, 9 x 3 in the model
    assert ('bbox_head.retina_cls.weight (file [90, 64, 3, 3], model [27, 64, 3, 3])'
            in message), message
    assert "load_from_reinit=['bbox_head.retina_cls']" in message, message
    assert 'retina_reg' not in message  # only the tensors that differ


def test_the_named_layer_keeps_its_initialisation_and_the_rest_loads(ten_and_three, caplog):
    ten, fresh = ten_and_three
    three = copy.deepcopy(fresh)
    keep = fine_tune_keys(three, {'state_dict': ten}, ['bbox_head.retina_cls'], 'coco.pth',
                          logger=logger_of(caplog))
    assert keep == ['bbox_head.retina_cls.weight', 'bbox_head.retina_cls.bias']
    report = load_source(three, Source('coco.pth', {'state_dict': ten}),
                         logger=logger_of(caplog), keep=keep)
    state = three.state_dict()
    assert report.loaded == len(state) - 2
    for key, value in state.items():
        expected = fresh.state_dict()[key] if key in keep else ten[key]
        assert torch.equal(value, expected), key
    logged = caplog.text
    assert ('bbox_head.retina_cls.weight [27, 64, 3, 3] is re-initialised (the file\'s is '
            '[90, 64, 3, 3])' in logged), logged
    assert 'bbox_head.retina_cls.bias [27] is re-initialised' in logged, logged
    assert f'loaded {len(state) - 2} tensors' in logged and '2 kept their initialisation' \
        in logged, logged


def test_a_name_that_matches_nothing_is_an_error(ten_and_three):
    ten, three = ten_and_three
    with pytest.raises(ValueError, match=r"'bbox_head\.retina_clss' names no tensor of this "
                       r"RetinaNet; did you mean \['bbox_head\.retina_cls'.*class-dependent "
                       r"layers: \['bbox_head\.retina_cls'\]"):
        fine_tune_keys(three, {'state_dict': ten}, ['bbox_head.retina_clss'], 'coco.pth')
    with pytest.raises(ValueError, match=r'list of module or tensor names.*got 3'):
        fine_tune_keys(three, {'state_dict': ten}, 3, 'coco.pth')


def test_a_named_tensor_that_would_fit_is_reinitialised_too(ten_and_three, caplog):
    """Same class count, the class scores named all the same (other classes of
    the same number): they keep their initialisation, and the log says that
    they could have loaded."""
    ten, _ = ten_and_three
    torch.manual_seed(1)
    model = build_detector(small_retinanet('unused', 'unused', 1))
    fresh = copy.deepcopy(model.state_dict())
    keep = fine_tune_keys(model, {'state_dict': ten}, 'bbox_head.retina_cls.bias',
                          'coco.pth', logger=logger_of(caplog))
    load_source(model, Source('coco.pth', {'state_dict': ten}), keep=keep,
                logger=logger_of(caplog))
    assert keep == ['bbox_head.retina_cls.bias']
    assert torch.equal(model.bbox_head.retina_cls.bias, fresh['bbox_head.retina_cls.bias'])
    assert torch.equal(model.bbox_head.retina_cls.weight, ten['bbox_head.retina_cls.weight'])
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and ('bbox_head.retina_cls.bias [90] is re-initialised (the '
                                  "file's has that shape too and is not loaded)"
                                  in warning[0].getMessage()), caplog.text


def test_the_class_layers_of_each_detector_family(det_root):
    """The layers the option's errors propose for the heads of configs/detection:
    Faster R-CNN's box regression is per class too; YOLOv3's whole prediction
    convs (each anchor's box, objectness and class outputs share one conv)."""
    cases = {'faster-rcnn_vovnet39_fpn_1x_coco.py': ['roi_head.bbox_head.fc_cls',
                                                     'roi_head.bbox_head.fc_reg'],
             'fcos_vovnet39_fpn_gn-head_1x_coco.py': ['bbox_head.conv_cls'],
             'yolov3_darknet53_ms-608-273e_coco.py': ['bbox_head.convs_pred']}
    for name, expected in cases.items():
        cfg = small_trainable(Config.fromfile(osp.join(ROOT, 'configs', 'detection', name)),
                              det_root, iters=1, work_dir='unused')
        assert class_layers(build_detector(cfg)) == expected, name
    cfg.model.bbox_head.num_classes = 3  # YOLOv3: the suggestion is the whole conv list
    with pytest.raises(CheckpointError, match=r"load_from_reinit=\['bbox_head\.convs_pred'\]"):
        fine_tune_keys(build_detector(cfg), {'state_dict': build_detector(
            small_trainable(Config.fromfile(osp.join(ROOT, 'configs', 'detection', name)),
                            det_root, iters=1, work_dir='unused')).state_dict()},
            None, 'coco.pth')


@HOOKS.register_module(name='FineTuneTestRecordHook', force=True)
class RecordWeightsHook(Hook):
    """The model's weights when training starts: after ``load_from``."""
    weights = {}

    def before_train(self, runner) -> None:
        type(self).weights = {k: v.clone() for k, v in runner.model.state_dict().items()}


def test_testing_and_resuming_load_every_tensor(det_root, tmp_path):
    """``load_from_reinit`` is for a training run's ``load_from``: there, the class
    scores keep their initialisation; a resumed run and a test load them too
    (tools/test.py with a 10-class file and a 3-class config is the strict
    loader's error)."""
    from mmengine.runner import Runner
    torch.manual_seed(0)
    ten = tmp_path / 'ten.pth'
    torch.save({'state_dict': build_detector(small_retinanet(det_root, '', 1)).state_dict()},
               ten)
    cfg = small_retinanet(det_root, str(tmp_path / 'work'), 1, THREE)
    cfg.train_dataloader.batch_size = 2
    cfg.update(load_from=str(ten), load_from_reinit=['bbox_head.retina_cls'],
               custom_hooks=[dict(type='mmbackbones.CheckpointNetworkHook'),
                             dict(type='FineTuneTestRecordHook')])
    with pytest.raises(CheckpointError, match=r'retina_cls\.weight.*torch\.Size\(\[90'):
        Runner.from_cfg(cfg).test()
    Runner.from_cfg(cfg).train()
    assert torch.allclose(RecordWeightsHook.weights['bbox_head.retina_cls.bias'],
                          torch.tensor(PRIOR_BIAS))
    tuned = load_checkpoint(str(tmp_path / 'work' / 'iter_1.pth'))['state_dict']
    cfg.update(resume=True, load_from=str(tmp_path / 'work' / 'iter_1.pth'))
    cfg.train_cfg.max_iters = 2
    Runner.from_cfg(cfg).train()
    start = RecordWeightsHook.weights
    assert all(torch.equal(start[k], tuned[k]) for k in tuned) and len(start) == len(tuned)
    assert not torch.allclose(tuned['bbox_head.retina_cls.bias'], torch.tensor(PRIOR_BIAS))


@pytest.mark.slow
@pytest.mark.e2e  # make test-e2e; docs/mmdetection.md's fine-tune block runs in make test
def test_fine_tuning_a_trained_detector_to_three_classes_with_train_py(det_root, tmp_path):
    """The MMDetection workflow: a RetinaNet trained on the 10 digits is
    fine-tuned to 3 of them with ``tools/train.py --load-from``. It starts from
    the trained backbone, neck and box branch (every tensor equal to the file's)
    with fresh class scores, and after a short run it beats the same run from
    no detector weights (measured: mAP 0.021 against no detection at all; with
    80 + 20 iterations, 0.051 against 0.003)."""
    import train as train_tool
    source = small_retinanet(det_root, str(tmp_path / 'ten'), 48)
    source.dump(str(tmp_path / 'ten.py'))
    train_tool.main([str(tmp_path / 'ten.py')])
    checkpoint = str(tmp_path / 'ten' / 'iter_48.pth')
    trained = load_checkpoint(checkpoint)['state_dict']

    def three_classes(name: str, load_from=None) -> float:
        cfg = small_retinanet(det_root, str(tmp_path / name), 16, THREE)
        cfg.custom_hooks = [dict(type='FineTuneTestRecordHook')]
        if load_from:
            cfg.load_from_reinit = ['bbox_head.retina_cls']
        cfg.dump(str(tmp_path / f'{name}.py'))
        runner = train_tool.main([str(tmp_path / f'{name}.py')]
                                 + (['--load-from', load_from] if load_from else []))
        # no detection above the score threshold: CocoMetric returns nothing (mAP 0)
        return runner.test().get('coco/bbox_mAP', 0.0)

    tuned = three_classes('tuned', checkpoint)
    start = RecordWeightsHook.weights
    differ = [k for k in start if not k.startswith('bbox_head.retina_cls.')
              and not torch.equal(start[k], trained[k])]
    assert not differ and len(start) == len(trained), differ
    assert torch.allclose(start['bbox_head.retina_cls.bias'], torch.tensor(PRIOR_BIAS))
    log = open(glob.glob(str(tmp_path / 'tuned' / '*' / '*.log'))[0]).read()
    assert 'load_from_reinit: bbox_head.retina_cls.weight [27, 64, 3, 3] is re-initialised' \
        in log and 'load_from_reinit: bbox_head.retina_cls.bias [27]' in log, log
    scratch = three_classes('scratch')
    assert tuned > 2 * scratch + 0.01, (tuned, scratch)
