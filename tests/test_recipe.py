"""Every hyperparameter of the seed's recipe, read from the resolved configs."""
import copy
import glob
import random
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmbackbones  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
IMAGENET_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', '*_imagenet.py')))
DEMO = osp.join(ROOT, 'configs', 'demo', 'vovnet19slim_digits.py')


def load(path):
    return Config.fromfile(path)


def build(registry_name, cfg, **default_args):
    from mmpretrain import registry
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return getattr(registry, registry_name).build(cfg, default_args=default_args or None)


def test_every_variant_has_a_config():
    names = {osp.basename(p)[:-len('_imagenet.py')] for p in IMAGENET_CONFIGS}
    expected = {'darknet19', 'darknet53', 'cspdarknet19', 'cspdarknet53', 'vovnet19_slim'}
    expected |= {f'vovnet{d}{v}' for d in (19, 39, 57, 99) for v in ('', '_v1')}
    assert names == expected


@pytest.mark.parametrize('path', IMAGENET_CONFIGS, ids=osp.basename)
def test_config_builds_its_backbone_with_a_matching_head(path):
    cfg = load(path)
    assert cfg._cfg_dict.get('_base_') is None  # inherited, not copied
    with open(path) as f:
        assert len(f.read().splitlines()) <= 4, 'a variant config is a few lines'
    backbone = build('MODELS', cfg.model.backbone)
    assert isinstance(backbone, mmbackbones.BaseBackbone)
    assert backbone.out_indices == (4, )
    assert cfg.model.head.in_channels == backbone.out_channels[-1]


@pytest.fixture(scope='module')
def recipe():
    return load(osp.join(ROOT, 'configs', 'darknet53_imagenet.py'))


@pytest.fixture(scope='module')
def classifier(recipe):
    cfg = copy.deepcopy(recipe.model)
    cfg.backbone = dict(type='VoVNet', depth=19, slim=True, out_indices=(4, ))
    cfg.head.in_channels = 512
    cfg.data_preprocessor = recipe.data_preprocessor
    return build('MODELS', cfg)


def test_optimizer_sgd_and_no_decay_on_norms(recipe, classifier):
    from mmengine.optim import build_optim_wrapper
    optim = recipe.optim_wrapper
    assert optim.type == 'AmpOptimWrapper'  # mixed precision on GPU
    assert optim.optimizer == dict(type='SGD', lr=0.5, momentum=0.9, weight_decay=2e-5)
    cfg = optim.copy()
    cfg.type = 'OptimWrapper'
    cfg.pop('loss_scale')
    wrapper = build_optim_wrapper(classifier, cfg)
    decay = {id(p): g['weight_decay'] for g in wrapper.optimizer.param_groups
             for p in g['params']}
    from mmbackbones.models.layers import NORM_TYPES
    norm_params = {id(p) for m in classifier.modules() if isinstance(m, NORM_TYPES)
                   for p in m.parameters()}
    assert norm_params
    for name, param in classifier.named_parameters():
        expected = 0.0 if id(param) in norm_params else 2e-5
        assert decay[id(param)] == expected, name
    assert all(g['momentum'] == 0.9 and g['lr'] == 0.5
               for g in wrapper.optimizer.param_groups)


def scaled_lr(recipe, world_size: int) -> float:
    """The lr after MMEngine's own ``Runner.scale_lr`` on the recipe's optimizer,
    dataloader and ``auto_scale_lr``; the Runner's state that it reads is given
    directly, since a whole Runner would build the ImageNet dataset."""
    from types import SimpleNamespace

    from mmengine.logging import MMLogger
    from mmengine.optim import OptimWrapper
    from mmengine.runner import Runner
    optimizer = recipe.optim_wrapper.optimizer
    sgd = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=optimizer.lr,
                          momentum=optimizer.momentum)
    wrapper = OptimWrapper(sgd)
    state = SimpleNamespace(_train_dataloader=recipe.train_dataloader, world_size=world_size,
                            logger=MMLogger.get_current_instance(),
                            param_schedulers=recipe.param_scheduler)
    Runner.scale_lr(state, wrapper, recipe.auto_scale_lr)
    return wrapper.optimizer.param_groups[0]['lr']


def test_batch_1024_as_512_x_2_with_lr_autoscaling(recipe):
    assert recipe.train_dataloader.batch_size == 512
    assert recipe.auto_scale_lr == dict(base_batch_size=1024, enable=True)
    # the seed's lr 0.5 at 512 x 2 GPUs; other set-ups scale linearly
    assert scaled_lr(recipe, world_size=2) == pytest.approx(0.5)
    assert scaled_lr(recipe, world_size=1) == pytest.approx(0.25)
    assert scaled_lr(recipe, world_size=8) == pytest.approx(2.0)
    assert recipe.train_cfg == dict(by_epoch=True, max_epochs=100, val_interval=1)


def lr_curve(cfg, epoch_length: int, epochs: int):
    from mmengine.optim import OptimWrapper
    model = torch.nn.Linear(1, 1)
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=cfg.optim_wrapper.optimizer.lr))
    schedulers = [build('PARAM_SCHEDULERS', s, optimizer=wrapper, epoch_length=epoch_length)
                  for s in cfg.param_scheduler]
    lrs = []
    for _ in range(epochs * epoch_length):
        lrs.append(wrapper.optimizer.param_groups[0]['lr'])
        for s in schedulers:
            s.step()
    return np.array(lrs)


def test_warmup_5_epochs_then_cosine_every_iteration(recipe):
    n = 10  # iterations per epoch
    lrs = lr_curve(recipe, n, 100)
    assert lrs[0] == pytest.approx(0.5 * 0.01)
    assert np.all(np.diff(lrs[:5 * n]) > 0)  # rises every iteration
    assert lrs[5 * n] == pytest.approx(0.5)
    t = np.arange(5 * n, 100 * n) - 5 * n
    cosine = 0.5 * (1 + np.cos(np.pi * t / (95 * n))) / 2
    np.testing.assert_allclose(lrs[5 * n:], cosine, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize('pipeline_name', ['exact_train_pipeline', 'train_pipeline'])
def test_per_sample_augmentation(recipe, pipeline_name):
    """Both pipelines: the exact one (MMPretrain's transforms) here in full; the
    fast default's equivalence to it in tests/test_fast_pipeline.py."""
    pipeline = recipe[pipeline_name]
    if pipeline_name == 'train_pipeline':
        assert recipe.train_dataloader.dataset.pipeline == pipeline  # the default
        assert recipe.data_pipeline == 'fast'
    types = [t['type'] for t in pipeline]
    exact_types = ['LoadImageFromFile', 'RandomResizedCrop', 'RandomFlip', 'NumpyToPIL',
                   'torchvision/TrivialAugmentWide', 'PILToNumpy', 'RandomErasing',
                   'PackInputs']
    fast_types = ['mmbackbones.DecodeRandomResizedCrop', 'torchvision/RandomHorizontalFlip',
                  'mmbackbones.TrivialAugmentWide', 'PILToNumpy', 'RandomErasing',
                  'PackInputs']
    exact = pipeline_name.startswith('exact')
    assert types == (exact_types if exact else fast_types)
    crop, flip, erase = (pipeline[1], pipeline[2], pipeline[6]) if exact else \
        (pipeline[0], pipeline[1], pipeline[4])
    assert crop.scale == 176 and crop.interpolation == 'bilinear'
    if exact:
        assert flip.prob == 0.5 and flip.direction == 'horizontal'
    else:  # torchvision's own flip, as in its recipe
        assert flip.p == 0.5
    assert erase.erase_prob == 0.1
    # torchvision erases the *normalized* image with 0 = the mean colour here (BGR)
    assert list(erase.fill_color) == recipe.data_preprocessor.mean[::-1]
    if exact:  # on a decoded image: the loader is not run
        transforms = [build('TRANSFORMS', t) for t in pipeline[1:-1]]
        assert 'TrivialAugmentWide' in repr(transforms[3])
        rng = np.random.default_rng(0)
        image = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
        outs = []
        for seed in range(4):  # each image gets its own random draw
            results = dict(img=image.copy(), img_shape=image.shape[:2],
                           ori_shape=image.shape[:2])
            np.random.seed(seed)
            torch.manual_seed(seed)
            random.seed(seed)
            for t in transforms:
                results = t(results)
            assert results['img'].shape == (176, 176, 3)
            outs.append(results['img'])
        assert not any(np.array_equal(outs[0], o) for o in outs[1:])


def test_cutmix_or_mixup_per_batch_never_both(recipe, classifier):
    from mmpretrain.models.utils import RandomBatchAugment
    from mmpretrain.models.utils.batch_augments import CutMix, Mixup
    augments = classifier.data_preprocessor.batch_augments
    assert isinstance(augments, RandomBatchAugment)
    # one augment is drawn per batch; mmpretrain appends "none" with the
    # remaining probability, which must be 0
    chosen = {type(a): p for a, p in zip(augments.augments, augments.probs)}
    assert chosen == {Mixup: 0.5, CutMix: 0.5, type(None): 0.0}
    alphas = {type(a): a.alpha for a in augments.augments if a is not None}
    assert alphas == {Mixup: 0.2, CutMix: 1.0}


def test_label_smoothing_on_mixed_targets_equals_torch(classifier):
    head = classifier.head
    torch.manual_seed(0)
    logits = torch.randn(6, 10)
    a, b = torch.randint(0, 10, (6, )), torch.randint(0, 10, (6, ))
    lam = 0.3
    soft = lam * F.one_hot(a, 10).float() + (1 - lam) * F.one_hot(b, 10).float()
    ours = head.loss_module(logits, soft)
    expected = F.cross_entropy(logits, soft, label_smoothing=0.1)
    torch.testing.assert_close(ours, expected)


def test_validation_resize_232_crop_224_top1_top5(recipe):
    pipeline = recipe.exact_test_pipeline
    assert [t['type'] for t in pipeline] == ['LoadImageFromFile', 'ResizeEdge', 'CenterCrop',
                                             'PackInputs']
    assert pipeline[1].scale == 232 and pipeline[1].edge == 'short'
    assert pipeline[2].crop_size == 224
    fast = recipe.val_dataloader.dataset.pipeline
    assert [t['type'] for t in fast] == ['mmbackbones.DecodeResizeCenterCrop', 'PackInputs']
    assert fast[0].resize == 232 and fast[0].crop_size == 224
    assert recipe.test_dataloader.dataset.pipeline == fast
    assert recipe.val_evaluator == dict(type='Accuracy', topk=(1, 5))


@pytest.mark.parametrize('cpu_bf16', ['1', '0'])
def test_amp_becomes_what_this_machine_runs(recipe, tmp_path, monkeypatch, cpu_bf16):
    from mmbackbones.engine.launch import prepare_config
    monkeypatch.setenv('MMBACKBONES_CPU_BF16', cpu_bf16)
    cfg = copy.deepcopy(recipe)  # prepare_config adapts the config it is given
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = str(tmp_path)
        (tmp_path / cfg[loader].dataset.split).mkdir(exist_ok=True)
    # the recipe's 512 images per process do not fit a CPU machine (tests/test_config_checks.py)
    prepared = prepare_config(cfg, check_memory=False)
    expected = 'AmpOptimWrapper' if torch.cuda.is_available() else 'OptimWrapper'
    assert prepared.optim_wrapper.type == expected
    hooks = [h['type'] for h in prepared.custom_hooks]
    assert ('mmbackbones.MixedPrecisionHook' in hooks) == (
        torch.cuda.is_available() or cpu_bf16 == '1')
    assert torch.cuda.is_available() or 'loss_scale' not in prepared.optim_wrapper


def test_demo_keeps_the_recipe_shape(recipe):
    demo = load(DEMO)
    for loader in ('train_dataloader', 'val_dataloader'):
        assert [t['type'] for t in demo[loader].dataset.pipeline] == \
            [t['type'] for t in recipe[loader].dataset.pipeline]
    for name in ('exact_train_pipeline', 'exact_test_pipeline'):
        assert [t['type'] for t in demo[name]] == [t['type'] for t in recipe[name]]
    assert [s['type'] for s in demo.param_scheduler] == \
        [s['type'] for s in recipe.param_scheduler]
    assert demo.model.train_cfg == recipe.model.train_cfg
    assert demo.model.head.loss == recipe.model.head.loss
    assert demo.optim_wrapper == recipe.optim_wrapper
