"""What tools/train.py and tools/test.py check before building a Runner: channels
between backbone and neck, the fp32 switch, and CPU memory."""
import os
import os.path as osp
import re
import sys

import pytest
from mmengine.config import Config

import mmbackbones  # noqa: F401
from mmbackbones.engine import launch
from training_utils import ROOT

sys.path.insert(0, osp.join(ROOT, 'tools'))
import train as train_tool  # noqa: E402

DET = osp.join(ROOT, 'configs', 'detection')


def config(path, **options):
    cfg = Config.fromfile(path)
    cfg.merge_from_dict(options)
    return cfg


@pytest.mark.parametrize('name', sorted(n for n in os.listdir(DET) if n.endswith('.py')))
def test_shipped_detection_configs_pass_the_channel_check(name):
    cfg = config(osp.join(DET, name))
    assert launch._build_config_backbone(cfg) is not None  # checked, not skipped
    launch.check_channels(cfg)


def test_mmdetection_index_space_is_caught_before_the_runner():
    """MMDetection ResNet's out_indices (0, 1, 2, 3) mean strides 4..32; ours 2..16."""
    args = train_tool.parse_args([osp.join(DET, 'retinanet_vovnet39_fpn_1x_coco.py'),
                                  '--cfg-options', 'model.backbone.out_indices=[0,1,2,3]'])
    with pytest.raises(ValueError) as err:
        train_tool.build_config(args)
    message = str(err.value)
    assert 'model.neck.in_channels is [256, 512, 768, 1024]' in message
    assert 'gives [128, 256, 512, 768]' in message and 'strides (2, 4, 8, 16)' in message
    assert 'out_indices=(1, 2, 3, 4)' in message


def test_yolov3_neck_wants_channels_deepest_first():
    cfg = config(osp.join(DET, 'yolov3_darknet53_ms-608-273e_coco.py'))
    cfg.model.neck.in_channels = [256, 512, 1024]
    with pytest.raises(ValueError, match=r'gives \[1024, 512, 256\] \(deepest first'):
        launch.check_channels(cfg)


def test_classifier_head_channels_are_checked():
    cfg = config(osp.join(ROOT, 'configs', 'vovnet39_imagenet.py'))
    launch.check_channels(cfg)
    cfg.model.head.in_channels = 768
    with pytest.raises(ValueError, match='model.head.in_channels is 768 .* gives 1024'):
        launch.check_channels(cfg)


def test_documented_fp32_switch_builds_an_optim_wrapper():
    from mmengine.optim import OptimWrapper, build_optim_wrapper
    from torch import nn
    cfg = config(osp.join(ROOT, 'configs', 'vovnet19_slim_imagenet.py'),
                 **{'optim_wrapper.type': 'OptimWrapper'})
    assert launch.choose_precision(cfg, cuda=True) is None  # kept on GPU machines too
    assert 'loss_scale' not in cfg.optim_wrapper and not cfg.val_cfg.get('fp16')
    wrapper = build_optim_wrapper(nn.Linear(2, 2), cfg.optim_wrapper)
    assert type(wrapper) is OptimWrapper


def test_cpu_run_too_large_for_memory_stops_with_what_to_change(monkeypatch):
    """The recipe's 512 images per process at 176 px on a 23 GB machine."""
    monkeypatch.setattr(launch, 'available_memory', lambda: 23 * 1024 ** 3)
    cfg = config(osp.join(ROOT, 'configs', 'vovnet39_imagenet.py'))
    with pytest.raises(MemoryError, match=r'512 images of 176x176 x (\d+) MB each, measured on '
                                          r'the backbone, x1.3 for the step') as err:
        launch.check_cpu_memory(cfg)
    measured = int(re.search(r'x (\d+) MB each', str(err.value)).group(1))
    assert 50 <= measured <= 65  # docs/pretraining.md: VoVNet-39 at 176 px keeps 57 MB
    fits = int(str(err.value).split('train_dataloader.batch_size=')[1].split()[0])
    assert 8 <= fits < 512
    launch.check_cpu_memory(config(osp.join(ROOT, 'configs', 'vovnet39_imagenet.py'),
                                   **{'train_dataloader.batch_size': fits}))


def test_cpu_workers_are_capped_to_the_cores(monkeypatch):
    monkeypatch.setattr(launch.os, 'cpu_count', lambda: 2)
    cfg = config(osp.join(ROOT, 'configs', 'vovnet39_imagenet.py'))
    launch.cap_cpu_workers(cfg)
    assert cfg.train_dataloader.num_workers == 2 and cfg.val_dataloader.num_workers == 2


def test_missing_coco_paths_are_listed_once():
    cfg = config(osp.join(DET, 'retinanet_vovnet39_fpn_1x_coco.py'),
                 data_root='/nonexistent/coco/')
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = '/nonexistent/coco/'
    with pytest.raises(FileNotFoundError) as err:
        launch.check_dataset_folders(cfg)
    listed = str(err.value).split('not found: ')[1].split(']')[0]
    assert listed.count('val2017/') == 1 and listed.count('instances_val2017.json') == 1
    assert 'see docs/mmdetection.md#training-and-testing;' in str(err.value)  # COCO's section


def test_missing_imagenet_paths_point_to_the_imagenet_section():
    cfg = config(osp.join(ROOT, 'configs', 'vovnet39_imagenet.py'))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = '/nonexistent/imagenet/'
    with pytest.raises(FileNotFoundError, match='see docs/pretraining.md#data;'):
        launch.check_dataset_folders(cfg)


def test_each_runner_gets_its_own_visualizer(tmp_path):
    """Two MMDetection Runners in one process log to their own work dirs."""
    from mmengine.visualization import Visualizer
    cfg = config(osp.join(DET, 'retinanet_vovnet39_fpn_1x_coco.py'))
    assert cfg.visualizer.name == 'visualizer'
    launch.own_visualizer(cfg)
    names = []
    for run in ('a', 'b'):
        visualizer = Visualizer.get_instance(f'{cfg.visualizer.get("name", "run_" + run)}',
                                             save_dir=str(tmp_path / run))
        names.append(visualizer.instance_name)
    assert names[0] != names[1]


def test_data_root_reaches_the_dataloaders(tmp_path, digits_root):
    """MMEngine resolves data_root=data_root when the file is read: neither
    --cfg-options data_root=... nor a child config's data_root moved the loaders."""
    from mmbackbones.engine.launch import apply_data_root
    demo = osp.join(ROOT, 'configs', 'demo', 'retinanet_vovnet19slim_digits.py')
    cfg = Config.fromfile(demo)
    before = cfg.data_root
    cfg.merge_from_dict({'data_root': '/data/mine/'})  # as tools/train.py --cfg-options
    apply_data_root(cfg, before)
    assert cfg.train_dataloader.dataset.data_root == '/data/mine/'
    assert cfg.val_dataloader.dataset.data_root == '/data/mine/'
    assert cfg.val_evaluator.ann_file == '/data/mine/annotations/val.json'
    child = tmp_path / 'child.py'
    child.write_text(f'_base_ = [{demo!r}]\ndata_root = {str(tmp_path) + "/"!r}\n')
    cfg = Config.fromfile(str(child))
    assert cfg.train_dataloader.dataset.data_root == before  # MMEngine alone
    apply_data_root(cfg)
    assert cfg.train_dataloader.dataset.data_root == str(tmp_path) + '/'
    own = tmp_path / 'own.py'  # a loader root set on its own stays
    own.write_text(f'_base_ = [{demo!r}]\n'
                   f'train_dataloader = dict(dataset=dict(data_root={digits_root!r}))\n')
    cfg = Config.fromfile(str(own))
    apply_data_root(cfg)
    assert cfg.train_dataloader.dataset.data_root == digits_root
    assert cfg.val_dataloader.dataset.data_root == before
