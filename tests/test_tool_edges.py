"""The tools at their edges: a release of an EMA run holds the averaged weights,
``data_root`` without a trailing slash, and ``tools/test.py`` reads no
pretrained file that its checkpoint replaces."""
import os.path as osp
import sys

import torch

from mmbackbones.publish import publish_checkpoint
from training_utils import ROOT, write_small_config

sys.path.insert(0, osp.join(ROOT, 'tools'))


def _toy_model():
    from mmengine.model import BaseModel

    class Toy(BaseModel):
        def __init__(self):
            super().__init__()
            self.norm = torch.nn.BatchNorm1d(4)
            self.linear = torch.nn.Linear(4, 1)

        def forward(self, inputs, labels, mode='tensor'):
            out = self.linear(self.norm(inputs)).squeeze(1)
            return dict(loss=((out - labels) ** 2).mean()) if mode == 'loss' else out
    return Toy()


def test_publish_takes_the_ema_weights_of_a_real_emahook_run(tmp_path):
    """EMAHook.before_save_checkpoint swaps the weights: 'state_dict' holds the
    averaged ones, 'ema_state_dict' the raw ones. The raw ones were published
    with meta.ema=True."""
    from mmengine.hooks import EMAHook
    from mmengine.runner import Runner
    torch.manual_seed(0)
    data = [dict(inputs=torch.randn(4), labels=torch.randn(())) for _ in range(8)]
    runner = Runner(
        model=_toy_model(), work_dir=str(tmp_path / 'work'),
        train_dataloader=dict(dataset=data, batch_size=4,
                              sampler=dict(type='DefaultSampler', shuffle=False),
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.5)),
        train_cfg=dict(by_epoch=False, max_iters=4),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=4, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=100)),
        custom_hooks=[dict(type='EMAHook', momentum=0.5)], log_level='WARNING',
        default_scope='mmengine')
    runner.train()
    ema_hook = next(h for h in runner.hooks if isinstance(h, EMAHook))
    averaged = ema_hook.ema_model.module.state_dict()
    raw = runner.model.state_dict()
    assert not torch.equal(averaged['linear.weight'], raw['linear.weight'])  # a real test
    release = torch.load(publish_checkpoint(str(tmp_path / 'work' / 'iter_4.pth')),
                         weights_only=True)
    assert release['meta']['ema'] is True
    assert release['state_dict'].keys() == raw.keys()
    for key, value in release['state_dict'].items():
        assert torch.equal(value, averaged[key]), key
    # a checkpoint without EMA says so
    plain = tmp_path / 'plain.pth'
    torch.save({'state_dict': raw, 'meta': {}}, plain)
    release = torch.load(publish_checkpoint(str(plain)), weights_only=True)
    assert release['meta']['ema'] is False
    assert torch.equal(release['state_dict']['linear.weight'], raw['linear.weight'])


def test_data_root_without_a_trailing_slash_is_joined_by_path_components():
    """It was glued onto the evaluators' ann_file: '.../digits_detannotations/val.json'."""
    from mmengine.config import Config

    from mmbackbones.engine.launch import apply_data_root
    cfg = Config(dict(
        data_root='/data/mine',
        val_dataloader=dict(dataset=dict(data_root='data/det')),
        test_dataloader=dict(dataset=dict(data_root='data/det')),
        val_evaluator=dict(ann_file='data/det/annotations/val.json'),
        # under another folder whose name starts the same: not the data set's
        test_evaluator=[dict(ann_file='data/det_other/val.json'),
                        dict(ann_file='data/det/val.json')]))
    apply_data_root(cfg, 'data/det')
    assert cfg.val_dataloader.dataset.data_root == '/data/mine'
    assert cfg.val_evaluator.ann_file == '/data/mine/annotations/val.json'
    assert [m.ann_file for m in cfg.test_evaluator] == ['data/det_other/val.json',
                                                        '/data/mine/val.json']
    cfg = Config(dict(data_root='/data/mine/', val_dataloader=dict(dataset=dict(
        data_root='data/det')), val_evaluator=dict(ann_file='data/det/annotations/val.json')))
    apply_data_root(cfg, 'data/det')  # the old root without the slash, the new with it
    assert cfg.val_evaluator.ann_file == '/data/mine/annotations/val.json'


def test_train_and_test_tools_take_data_root_without_a_slash(det_root, tmp_path):
    import test as test_tool
    import train as train_tool
    config = osp.join(ROOT, 'configs', 'demo', 'retinanet_vovnet19slim_digits.py')
    root = det_root.rstrip('/')
    options = ['--cfg-options', f'data_root={root}']
    cfg = train_tool.build_config(train_tool.parse_args(
        [config, '--work-dir', str(tmp_path / 'train'), *options]))
    assert cfg.val_evaluator.ann_file == osp.join(root, 'annotations', 'val.json')
    ckpt = tmp_path / 'any.pth'
    torch.save({'state_dict': {}}, ckpt)
    cfg = test_tool.build_config(test_tool.parse_args(
        [config, str(ckpt), '--work-dir', str(tmp_path / 'test'), *options]))
    assert cfg.test_evaluator.ann_file == osp.join(root, 'annotations', 'val.json')
    assert osp.isfile(cfg.test_evaluator.ann_file)


def test_test_tool_reads_no_pretrained_file_its_checkpoint_replaces(digits_root, tmp_path,
                                                                   monkeypatch):
    """Timm(weights=True) downloaded timm's ImageNet file (offline: an error)
    although the checkpoint replaces every weight."""
    import test as test_tool
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    from mmbackbones.loader import without_weights
    monkeypatch.setenv('MMBACKBONES_WEIGHTS_DIR', str(tmp_path / 'empty_cache'))
    config = write_small_config(tmp_path, digits_root, extra=(
        "model = dict(backbone=dict(_delete_=True, type='mmbackbones.Timm', "
        "model_name='convnext_atto', weights=True, out_indices=(4, )),\n"
        "    head=dict(in_channels=320))\n"))
    cfg = Config.fromfile(config)
    cfg.model.backbone = without_weights(cfg.model.backbone)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        torch.manual_seed(0)
        model = MODELS.build(cfg.model)
    ckpt = tmp_path / 'trained.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    metrics = test_tool.main([config, str(ckpt), '--work-dir', str(tmp_path / 'work'),
                              '--cfg-options', 'test_dataloader.dataset.indices=8'])
    assert 0 <= metrics['accuracy/top1'] <= 100
    assert not osp.exists(tmp_path / 'empty_cache') or not any(
        (tmp_path / 'empty_cache').iterdir())
