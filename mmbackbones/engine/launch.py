"""What tools/train.py and tools/test.py do to a config before building a Runner."""
import copy
import difflib
import logging
import os
import os.path as osp
import re
from typing import List, Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.logging import print_log

from ..input_check import check_config as check_input_format
from .precision import choose_precision


def prepare_config(cfg: Config, launcher: str = 'none', check_memory: bool = True,
                   data_root_before: Optional[str] = None) -> Config:
    """Check the config early and adapt it to the machine:

    * ``--launcher pytorch`` without CUDA: MMEngine would call
      ``torch.cuda.set_device`` and NCCL, and give DDP ``device_ids``; we start a
      gloo process group ourselves (the Runner then skips its own) and wrap the
      model in DDP without device ids.
    * mixed precision for this machine (:func:`~.precision.choose_precision`):
      ``AmpOptimWrapper`` (which asserts CUDA) becomes bf16 autocast on a CPU with
      native bf16 (features only), fp32 on one without; evaluation likewise.
    * the top-level ``data_root`` (``--cfg-options data_root=...``, a child
      config's) reaches the dataloaders (:func:`apply_data_root`);
    * the model's backbone type and the dataset folders exist; the neck's (or
      classifier head's) ``in_channels`` match the backbone's ``out_channels``.
    * ``data_pipeline='exact'``: the config's exact pipelines replace the fast
      ones (:func:`select_data_pipeline`).
    * unreadable images: skipped (and counted) in training, named in evaluation
      (:func:`guard_image_loading`).
    * on CPU: data workers capped at the cores, and a run that cannot fit in
      memory stops now with what to change (:func:`check_cpu_memory`).
    * ``resume=True`` without ``load_from`` resumes from :func:`latest_checkpoint`.
    * checkpoints record their network, and ``load_from``/``resume`` load
      strictly (:class:`~.hooks.CheckpointNetworkHook`).
    * the data preprocessor gives the input the weights were trained on, or a
      warning says so (``input_check='error'``: an error;
      :func:`mmbackbones.input_check.check_config`).
    """
    apply_data_root(cfg, data_root_before)
    check_backbone_type(cfg)
    add_hook(cfg, 'mmbackbones.CheckpointNetworkHook')
    check_channels(cfg)
    check_dataset_folders(cfg)
    select_data_pipeline(cfg)
    guard_image_loading(cfg)
    own_visualizer(cfg)
    if cfg.get('resume') and not cfg.get('load_from') and cfg.get('work_dir'):
        cfg.load_from = latest_checkpoint(cfg.work_dir)
    check_input_format(cfg)  # once the weights (load_from too) are settled
    cuda = torch.cuda.is_available()
    if launcher != 'none' and not cuda:
        if launcher != 'pytorch':
            raise ValueError(f'launcher {launcher!r} needs GPUs here; on CPU use '
                             f"--launcher pytorch (tools/dist_train.sh)")
        _init_gloo()
        cfg.env_cfg = dict(cfg.get('env_cfg', {}))
        cfg.env_cfg['dist_cfg'] = dict(cfg.env_cfg.get('dist_cfg', {}), backend='gloo')
        wrapper = dict(cfg.get('model_wrapper_cfg') or {})
        wrapper.setdefault('type', 'MMDistributedDataParallel')
        wrapper['device_ids'] = None
        cfg.model_wrapper_cfg = wrapper
    dtype = choose_precision(cfg, cuda)
    if not cuda:
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            if cfg.get(loader) is not None:
                cfg[loader]['pin_memory'] = False
        cap_cpu_workers(cfg)
        if check_memory:
            check_cpu_memory(cfg, dtype)
    return cfg


def add_hook(cfg: Config, hook_type: str) -> None:
    """Append a hook to ``custom_hooks`` unless the config has it."""
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(h.get('type') in (hook_type, hook_type.split('.')[-1]) for h in hooks):
        cfg.custom_hooks = hooks + [dict(type=hook_type)]


CHECKPOINT_NAME = re.compile(r'(?:epoch|iter)_(\d+)\.pth')


def _step(path: str) -> int:
    match = CHECKPOINT_NAME.fullmatch(osp.basename(path))
    return int(match.group(1)) if match else -1


def latest_checkpoint(work_dir: str) -> Optional[str]:
    """The newest checkpoint a run in ``work_dir`` can resume from, or None.

    MMEngine reads only its ``last_checkpoint`` pointer, which CheckpointHook
    writes after the checkpoint itself: a run killed between the two writes
    would resume from the checkpoint before (or from scratch). Checkpoints are
    written atomically here, so every ``epoch_N.pth``/``iter_N.pth`` present is
    complete and the highest N wins; the pointer still counts (it may name a
    file in another ``out_dir``).
    """
    candidates = []
    if osp.isdir(work_dir):
        candidates = [osp.join(work_dir, name) for name in os.listdir(work_dir)
                      if CHECKPOINT_NAME.fullmatch(name)]
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            target = f.read().strip()
        if osp.isfile(target):
            candidates.append(target)
    return max(candidates, key=_step) if candidates else None


def _init_gloo() -> None:
    import torch.distributed as dist
    if not dist.is_initialized():
        missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
                   if k not in os.environ]
        if missing:
            raise RuntimeError(f'--launcher pytorch needs {missing} in the environment; '
                               'start it with tools/dist_train.sh (torchrun)')
        dist.init_process_group('gloo')


def check_backbone_type(cfg: Config) -> None:
    """An unknown ``model.backbone.type`` fails now, with the names we provide."""
    backbone = cfg.get('model', {}).get('backbone')
    if not isinstance(backbone, dict) or not isinstance(backbone.get('type'), str):
        return
    from mmengine.registry import MODELS, DefaultScope
    name = backbone['type']
    scope = cfg.get('default_scope') or 'mmengine'
    with DefaultScope.overwrite_default_scope(scope):
        with MODELS.switch_scope_and_registry(scope) as registry:
            found = registry.get(name)
    if found is None:
        from ..api import list_backbones
        ours = list_backbones()
        close = difflib.get_close_matches(name.split('.')[-1], ours, n=1)
        hint = f"; did you mean 'mmbackbones.{close[0]}'?" if close else ''
        raise ValueError(f'unknown backbone type {name!r} in model.backbone (scope '
                         f'{scope!r}); mmbackbones provides {ours}, as '
                         f"'mmbackbones.<Name>'{hint}")


def _build_config_backbone(cfg: Config, device: str = 'meta'):
    """The config's backbone when it is one of ours, without its weights; on the
    meta device (the default) for metadata only, no memory. Else None."""
    backbone = (cfg.get('model') or {}).get('backbone')
    if not isinstance(backbone, dict) or not isinstance(backbone.get('type'), str):
        return None
    from mmengine.registry import MODELS, DefaultScope

    from ..models.base import BaseBackbone
    scope = cfg.get('default_scope') or 'mmengine'
    with DefaultScope.overwrite_default_scope(scope):
        with MODELS.switch_scope_and_registry(scope) as registry:
            cls = registry.get(backbone['type'])
    if not (isinstance(cls, type) and issubclass(cls, BaseBackbone)):
        return None
    # weights do not change metadata nor memory: neither init_cfg nor a file to load
    kwargs = {k: v for k, v in backbone.items()
              if k not in ('type', 'init_cfg', 'pretrained_file')}
    with torch.device(device):
        return cls(**kwargs)


def check_channels(cfg: Config) -> None:
    """The first neck's ``in_channels`` (YOLOV3Neck: deepest first), or without a
    channel-taking neck the classifier head's, must match the backbone's
    ``out_channels``; else stop before building anything, with both lists."""
    model = cfg.get('model') or {}
    backbone = _build_config_backbone(cfg)
    if backbone is None:
        return
    out = list(backbone.out_channels)
    neck = model.get('neck')
    neck = neck[0] if isinstance(neck, (list, tuple)) and neck else neck
    head = model.get('head')
    if isinstance(neck, dict) and neck.get('in_channels') is not None:
        where, got = 'model.neck.in_channels', neck['in_channels']
        got = list(got) if isinstance(got, (list, tuple)) else [got]
        expected = out[::-1] if str(neck.get('type', '')).endswith('YOLOV3Neck') else out
    elif isinstance(head, dict) and isinstance(head.get('in_channels'), int):
        where, got, expected = 'model.head.in_channels', [head['in_channels']], out[-1:]
    else:
        return
    if got != expected:
        name = model['backbone']['type']
        raise ValueError(
            f'{where} is {got if len(got) > 1 else got[0]} but the backbone ({name}, '
            f'out_indices={backbone.out_indices}, strides {backbone.out_strides}) gives '
            f'{expected if len(expected) > 1 else expected[0]}'
            + (' (deepest first for YOLOV3Neck)' if expected is not out and len(out) > 1
               else '') + '. mmbackbones counts levels by stride: level i has stride '
            '2**(i+1), so level 0 is stride 2 and MMDetection ResNet\'s out_indices '
            '(0, 1, 2, 3) are out_indices=(1, 2, 3, 4) here.')


def own_visualizer(cfg: Config) -> None:
    """Drop MMDetection's fixed ``visualizer.name``: with it a second Runner in the
    same process (the demo trains three) reuses the first one's visualizer, and its
    scalars land in the first run's log. Unnamed, each Runner names its own after
    its experiment."""
    visualizer = cfg.get('visualizer')
    if isinstance(visualizer, dict) and visualizer.get('name') == 'visualizer':
        visualizer.pop('name')


def cap_cpu_workers(cfg: Config) -> None:
    """Without a GPU the workers compete with training for the cores: at most
    one per core of this process's share."""
    share = max(1, (os.cpu_count() or 1) // int(os.environ.get('LOCAL_WORLD_SIZE', 1)))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader_cfg = cfg.get(loader)
        if loader_cfg is not None and loader_cfg.get('num_workers', 0) > share:
            print_log(f'no CUDA device: {loader}.num_workers {loader_cfg.num_workers} -> '
                      f'{share} (the cores of this process)', logger='current',
                      level=logging.WARNING)
            loader_cfg.num_workers = share


def train_input_size(cfg: Config) -> tuple:
    """``(height, width)`` of the training images after the pipeline's first
    resize or crop, or 224 x 224."""
    pipelines = _pipelines(cfg.get('train_dataloader'))
    for transform in pipelines[0] if pipelines else []:
        size = transform.get('scale', transform.get('crop_size')) \
            if isinstance(transform, dict) else None
        if isinstance(size, int):
            return size, size
        sizes = [size] if isinstance(size, (list, tuple)) and len(size) == 2 and all(
            isinstance(v, int) for v in size) else size
        if isinstance(sizes, (list, tuple)) and sizes and all(
                isinstance(s, (list, tuple)) and len(s) == 2 for s in sizes):
            width, height = max(sizes, key=lambda s: s[0] * s[1])  # multi-scale: largest
            return height, width  # OpenMMLab's scales are (width, height)
    return 224, 224


def activation_bytes_per_image(backbone, size: tuple, probe: int = 96,
                               dtype: Optional[torch.dtype] = None) -> int:
    """Bytes the backbone keeps for backward per training image of ``size`` (under
    autocast to ``dtype`` when given): measured on one ``probe`` x ``probe`` image
    and scaled by area."""
    saved = {}
    params = {p.data_ptr() for p in backbone.parameters()}
    # autocast saves a low-precision copy of each weight: not per image
    weight_shapes = {tuple(p.shape) for p in backbone.parameters()}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params and tuple(tensor.shape) not in weight_shapes:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    backbone.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            torch.autocast('cpu', dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        backbone(torch.randn(1, backbone.in_channels, probe, probe))
    return int(sum(saved.values()) * size[0] * size[1] / probe ** 2)


def available_memory() -> Optional[int]:
    """MemAvailable of /proc/meminfo in bytes, or None where there is none."""
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


#: a training step's peak over the activations saved for backward: measured 1.07
#: (VoVNet-39, 64 images of 176 px); the rest is for data workers and the allocator
STEP_PEAK_MARGIN = 1.3


def check_cpu_memory(cfg: Config, dtype: Optional[torch.dtype] = None) -> None:
    """A CPU run whose training batch cannot fit stops here with the numbers and
    what to change, instead of being killed by the OOM killer hours later."""
    loader = cfg.get('train_dataloader')
    available = available_memory()
    if loader is None or not cfg.get('train_cfg') or available is None:
        return
    backbone = _build_config_backbone(cfg, device='cpu')
    if backbone is None:
        return
    size = train_input_size(cfg)
    measured = activation_bytes_per_image(backbone, size, dtype=dtype)
    weights = 4 * sum(p.numel() for p in backbone.parameters()) * 4  # + grads, momentum
    batch = int(loader.get('batch_size', 1))
    processes = int(os.environ.get('LOCAL_WORLD_SIZE', 1))
    per_image = int(measured * STEP_PEAK_MARGIN)
    need = processes * (batch * per_image + weights)
    if need <= 0.9 * available:
        return
    fits = max(1, int((0.9 * available / processes - weights) // per_image))
    fits = 2 ** (fits.bit_length() - 1)
    gb = 1024 ** 3
    raise MemoryError(
        f'this CPU run needs about {need / gb:.1f} GB for its training steps '
        f'({processes} process(es) x {batch} images of {size[0]}x{size[1]} x '
        f'{measured / 1024 ** 2:.0f} MB each, measured on the backbone, x{STEP_PEAK_MARGIN} '
        f'for the step\'s peak), but '
        f'{available / gb:.1f} GB are available. Lower the batch, e.g. --cfg-options '
        f'train_dataloader.batch_size={fits} (auto_scale_lr scales the learning rate when '
        f'enabled), train on GPUs, or pass --skip-memory-check if you know better.')


LOADERS = ('LoadImageFromFile', 'mmcv.LoadImageFromFile')
#: our loading transforms that take ``skip``/``record`` themselves (they decode and
#: crop in one step, so they are configured, not replaced)
SKIPPING_LOADERS = ('DecodeRandomResizedCrop', 'DecodeResizeCenterCrop')
#: ``data_pipeline`` choices: which config variables hold the pipelines
PIPELINE_CHOICES = {'exact': ('exact_train_pipeline', 'exact_test_pipeline')}
#: ``unreadable_images`` in a config: the defaults
UNREADABLE_DEFAULTS = dict(max_fraction=0.001, skip_in_eval=False)


def _pipelines(loader_cfg) -> List[list]:
    dataset = (loader_cfg or {}).get('dataset')
    found = []
    stack = [dataset]
    while stack:  # wrappers: 'dataset' or a list of 'datasets'
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get('pipeline'), list):
                found.append(item['pipeline'])
            stack += [item.get('dataset')] + list(item.get('datasets') or [])
    return found


def select_data_pipeline(cfg: Config) -> None:
    """``data_pipeline='exact'`` (e.g. ``--cfg-options data_pipeline=exact``): the
    train loader's pipelines become the config's ``exact_train_pipeline``, the val
    and test loaders' ``exact_test_pipeline`` (the recipe's MMPretrain transforms
    on full-size decodes). ``'fast'`` (the recipe's default) or no key: unchanged."""
    choice = cfg.get('data_pipeline', 'fast')
    if choice == 'fast':
        return
    if choice not in PIPELINE_CHOICES:
        raise ValueError(f"data_pipeline must be 'fast' or one of {sorted(PIPELINE_CHOICES)}, "
                         f'got {choice!r}')
    train_name, test_name = PIPELINE_CHOICES[choice]
    missing = [name for name in (train_name, test_name) if cfg.get(name) is None]
    if missing:
        raise ValueError(f'data_pipeline={choice!r} needs {missing} in the config (the '
                         f'recipe, configs/_base_/imagenet_recipe.py, defines them)')
    for loader, name in (('train_dataloader', train_name), ('val_dataloader', test_name),
                         ('test_dataloader', test_name)):
        for pipeline in _pipelines(cfg.get(loader)):
            pipeline[:] = copy.deepcopy(list(cfg[name]))


def guard_image_loading(cfg: Config) -> None:
    """Replace the pipelines' ``LoadImageFromFile`` by
    :class:`~mmbackbones.datasets.LoadImageOrSkip` (and set ``skip``/``record`` of
    the recipe's fast loaders, which are one): training skips an unreadable
    image (warning naming it, another sample drawn) and
    :class:`~mmbackbones.engine.UnreadableImagesHook` stops the run past
    ``unreadable_images.max_fraction`` of the set (0.1 %); evaluation stops naming
    the file unless ``unreadable_images.skip_in_eval=True``, which leaves the
    unreadable images out of the evaluated sets (:func:`leave_out_unreadable_eval_images`)."""
    options = {**UNREADABLE_DEFAULTS, **(cfg.get('unreadable_images') or {})}
    record = osp.join(cfg.get('work_dir') or '.', 'unreadable_images.txt')
    guarded = False
    if options['skip_in_eval']:
        leave_out_unreadable_eval_images(cfg)
    # evaluation never skips inside the pipeline: a skipped sample would be replaced by
    # another (MMPretrain) or crash (MMDetection); the sets were checked above instead
    for loader, skip in (('train_dataloader', True), ('val_dataloader', False),
                         ('test_dataloader', False)):
        for pipeline in _pipelines(cfg.get(loader)):
            for i, transform in enumerate(pipeline):
                kind = transform.get('type') if isinstance(transform, dict) else None
                if kind in LOADERS:
                    pipeline[i] = dict(transform, type='mmbackbones.LoadImageOrSkip', skip=skip,
                                       record=record if skip else None)
                elif isinstance(kind, str) and kind.split('.')[-1] in SKIPPING_LOADERS:
                    pipeline[i] = dict(transform, skip=skip, record=record if skip else None)
                else:
                    continue
                guarded |= loader == 'train_dataloader'
    hooks = list(cfg.get('custom_hooks') or [])
    if guarded and cfg.get('train_cfg') and not any(
            str(h.get('type', '')).endswith('UnreadableImagesHook') for h in hooks):
        os.makedirs(osp.dirname(record) or '.', exist_ok=True)
        hooks.append(dict(type='mmbackbones.UnreadableImagesHook', record=record,
                          max_fraction=options['max_fraction']))
        cfg.custom_hooks = hooks


EVAL_RECORD = 'unreadable_eval_images.txt'


def leave_out_unreadable_eval_images(cfg: Config) -> List[str]:
    """``unreadable_images.skip_in_eval=True``: decode every image of the
    validation and test sets once, now (in parallel), and evaluate on the readable
    ones only: the dataset (and the COCO evaluator) read a filtered annotation
    file, so no other image is ever scored in an unreadable one's place. The
    files left out go to ``<work_dir>/unreadable_eval_images.txt`` (not the
    training record), and every validation logs their count
    (:class:`~.hooks.UnreadableEvalImagesHook`). Returns them."""
    from ..datasets.check import (Report, check_images, coco_images, find_images,
                                  write_exclusions)
    work_dir = cfg.get('work_dir') or '.'
    left_out, done = [], {}
    for loader in ('val_dataloader', 'test_dataloader'):
        dataset = innermost_dataset(cfg, loader)
        if dataset is None:
            continue
        folder, ann = dataset_paths(dataset)
        key = (folder, ann)
        if key not in done:
            coco = ann if ann and ann.endswith('.json') else None
            if ann and not coco:
                raise ValueError(f'unreadable_images.skip_in_eval=True supports class folders '
                                 f'and COCO sets; {loader} reads the list {ann}')
            if coco:  # a listed image missing from the disk is one more unreadable one
                paths = coco_images(coco, folder)
            else:
                paths = find_images(folder)
            report = Report(check_images(paths, workers=min(8, os.cpu_count() or 1),
                                         progress=False))
            out = osp.join(work_dir, 'eval_readable', loader.split('_')[0])
            written = write_exclusions(report, out, folder, coco)
            done[key] = (osp.abspath(written[-1]) if len(written) > 1 else None,
                         report.unreadable)
        readable, bad = done[key]
        left_out += [p for p in bad if p not in left_out]
        if bad and readable:
            dataset['ann_file'] = readable
            for metric in _as_list(cfg.get(loader.replace('dataloader', 'evaluator'))):
                if isinstance(metric, dict) and metric.get('ann_file') and ann and \
                        osp.abspath(metric['ann_file']) == osp.abspath(ann):
                    metric['ann_file'] = readable
    os.makedirs(work_dir, exist_ok=True)
    record = osp.join(work_dir, EVAL_RECORD)
    with open(record, 'w') as f:
        f.writelines(p + '\n' for p in left_out)
    if left_out:
        print_log(f'{len(left_out)} unreadable evaluation images are left out of the evaluated '
                  f'sets (listed in {record}): {left_out[:10]}', logger='current',
                  level=logging.WARNING)
        hooks = list(cfg.get('custom_hooks') or [])
        hooks.append(dict(type='mmbackbones.UnreadableEvalImagesHook', record=record))
        cfg.custom_hooks = hooks
    return left_out


def dataset_sets(cfg: Config) -> List[Tuple[str, str, Optional[str]]]:
    """``(loader, image folder, annotation file or None)`` of the config's
    train/val/test sets (through dataset wrappers); val and test often share one."""
    sets = []
    for loader in LOADER_NAMES:
        dataset = innermost_dataset(cfg, loader)
        if dataset is None:
            continue
        entry = (loader, *dataset_paths(dataset))
        if entry[1:] not in [s[1:] for s in sets]:
            sets.append(entry)
    return sets


LOADER_NAMES = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def innermost_dataset(cfg: Config, loader: str) -> Optional[dict]:
    """The dataset dict of ``cfg[loader]``, through dataset wrappers, or None."""
    dataset = (cfg.get(loader) or {}).get('dataset')
    while isinstance(dataset, dict) and 'dataset' in dataset:
        dataset = dataset['dataset']
    return dataset if isinstance(dataset, dict) else None


def dataset_paths(dataset: dict) -> Tuple[str, Optional[str]]:
    """``(image folder, annotation file or None)`` of a dataset dict."""
    root = dataset.get('data_root', '')
    prefix = dataset.get('data_prefix') or dataset.get('split') or ''
    if isinstance(prefix, dict):
        prefix = prefix.get('img_path', prefix.get('img', ''))
    ann = dataset.get('ann_file')
    return osp.join(root, prefix) if prefix else root, osp.join(root, ann) if ann else None


def _datasets(cfg: Config) -> List[dict]:
    """The innermost dataset dict of each dataloader (through wrappers)."""
    datasets = [innermost_dataset(cfg, loader) for loader in LOADER_NAMES]
    return [d for d in datasets if d is not None and d.get('data_root')]


def apply_data_root(cfg: Config, before: Optional[str] = None) -> None:
    """The config's top-level ``data_root`` reaches the dataloaders. MMEngine
    resolves ``data_root=data_root`` when the file is read, so neither
    ``--cfg-options data_root=...`` (``before``: its value until then) nor a child
    config's own ``data_root`` changed where the data is read from. Loaders whose
    root is the value ``data_root`` had before (``before``, or in the config's
    ``_base_`` files) take ``cfg.data_root``, as do the evaluators' ``ann_file``
    paths under it; a loader root set on its own stays."""
    root = cfg.get('data_root')
    datasets = _datasets(cfg)
    if not isinstance(root, str) or not datasets:
        return
    roots = {d['data_root'] for d in datasets}
    stale = (roots & ({before} | _base_data_roots(cfg))) - {root}
    if not stale:
        return
    for dataset in datasets:
        if dataset['data_root'] in stale:
            dataset['data_root'] = root
    for evaluator in ('val_evaluator', 'test_evaluator'):
        for metric in _as_list(cfg.get(evaluator)):
            ann = metric.get('ann_file') if isinstance(metric, dict) else None
            for old in sorted(stale, key=len, reverse=True):  # the deepest root first
                moved = _rebase(ann, old, root) if isinstance(ann, str) else None
                if moved is not None:
                    metric['ann_file'] = moved
                    break
    print_log(f'data_root {root!r} applied to the dataloaders (they read {sorted(stale)})',
              logger='current')


def _rebase(path: str, old: str, new: str) -> Optional[str]:
    """``path`` moved from under the folder ``old`` to under ``new``, by path
    components (``data_root`` may or may not end in a slash, and 'data/digits' is
    no folder of 'data/digits_det/val.json'); None when ``path`` is not under ``old``."""
    path_n, old_n = osp.normpath(path), osp.normpath(old)
    if path_n == old_n:
        rest = ''
    elif old_n == '.':  # data_root='./': every relative path below it is under it
        if osp.isabs(path_n) or path_n == '..' or path_n.startswith('..' + os.sep):
            return None
        rest = path_n
    else:
        under = old_n.rstrip(os.sep) + os.sep
        if not path_n.startswith(under):
            return None
        rest = path_n[len(under):]
    return osp.join(new, rest) if rest else new


def _base_data_roots(cfg: Config) -> set:
    """The top-level ``data_root`` of each ``_base_`` file of ``cfg``'s file."""
    filename = getattr(cfg, 'filename', None)
    if not filename or not osp.isfile(filename):
        return set()
    values = set()
    try:  # MMEngine's own resolution of _base_ paths (pinned version)
        for base in Config._get_base_files(filename):
            path, scope = Config._get_cfg_path(base, filename)
            path = path if osp.isabs(path) else osp.join(osp.dirname(filename), path)
            value = Config.fromfile(path).get('data_root') if scope is None else None
            if isinstance(value, str):
                values.add(value)
    except Exception:  # noqa: BLE001 (a base we cannot read changes nothing here)
        return values
    return values


def _as_list(value) -> list:
    return value if isinstance(value, (list, tuple)) else [value] if value else []


def dataset_folders(cfg: Config) -> List[str]:
    folders = [path for _, folder, ann in dataset_sets(cfg) for path in (folder, ann)]
    return list(dict.fromkeys(f for f in folders if f))


def check_dataset_folders(cfg: Config) -> None:
    missing = [f for f in dataset_folders(cfg) if not osp.exists(f)]
    if missing:
        # detection sets name an annotation file (COCO); class folders (ImageNet) do not
        detection = any(ann for _, _, ann in dataset_sets(cfg))
        docs = ('docs/mmdetection.md#training-and-testing' if detection
                else 'docs/pretraining.md#data')
        raise FileNotFoundError(
            f'dataset path(s) not found: {missing}. Set data_root in the config (or '
            f'--cfg-options data_root=... train_dataloader.dataset.data_root=...), see '
            f'{docs}; the demo data is made by `python tools/make_demo_data.py`.')
