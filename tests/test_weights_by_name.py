"""Public weights by name, downloaded from a local HTTP server (127.0.0.1) that
serves files this test writes in each public layout: first download, cache hit,
truncated/corrupt files, 404, a stalled server, two processes at once, offline,
cache names that never collide, hashes checked on every use, an unwritable cache.
Nothing here reaches beyond the machine."""
import dataclasses
import hashlib
import io
import json
import multiprocessing
import os
import time

import pytest
import torch
from mmengine.config import Config
from mmengine.runner.checkpoint import CheckpointLoader

from mmbackbones import CheckpointError, build_backbone, load_weights
from mmbackbones import download
from mmbackbones.checkpoint import load_checkpoint
from mmbackbones.download import DownloadError, cache_dir, cache_path, fetch, published_hash
from mmbackbones.registry import MODELS
from mmbackbones.weights.catalog import WeightsEntry, catalog
from local_files import serving
from public_layouts import vovnet_detectron2_state


@pytest.fixture
def server():
    with serving() as files:
        yield files


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / 'weights'
    monkeypatch.setenv('MMBACKBONES_WEIGHTS_DIR', str(folder))
    for name in ('MMBACKBONES_OFFLINE', 'HF_HUB_OFFLINE'):
        monkeypatch.delenv(name, raising=False)
    return folder


@pytest.fixture
def entries():
    """Adds catalog entries for the test; removes them after."""
    added = []

    def add(entry: WeightsEntry) -> WeightsEntry:
        catalog()[entry.name] = entry
        added.append(entry.name)
        return entry
    yield add
    for name in added:
        catalog().pop(name, None)


def saved(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def random_state(model: torch.nn.Module) -> dict:
    torch.manual_seed(0)
    return {k: torch.randn_like(v) if v.is_floating_point() else v
            for k, v in model.state_dict().items()}


def vovnet19_d2(server, entries, name='V-19-eSE.pth'):
    state = vovnet_detectron2_state(19)
    server.files[name] = saved(state)
    entry = entries(WeightsEntry('test-d2/V-19-eSE', server.url(name), 'VoVNet',
                                 dict(depth=19, stem_stride=4), 'vovnet-detectron2:V-19-eSE',
                                 'test', 224))
    return entry, state


def test_first_download_then_cache_hit(server, cache, entries):
    entry, state = vovnet19_d2(server, entries)
    model = build_backbone('VoVNet-19-S4', weights=entry.name)
    assert torch.equal(model.stem[0].conv.weight, state['stem.stem_1/conv.weight'])
    assert server.requests == {'V-19-eSE.pth': 1}
    assert sorted(os.listdir(cache)) == ['V-19-eSE.pth', 'V-19-eSE.pth.json',
                                         'V-19-eSE.pth.lock']
    again = build_backbone('VoVNet-19-S4', weights='mmbackbones://test-d2/V-19-eSE')
    assert torch.equal(again.stage5[-1].ese.fc.bias, model.stage5[-1].ese.fc.bias)
    assert server.requests == {'V-19-eSE.pth': 1}  # no second request


def test_name_of_another_network_is_refused_before_downloading(server, cache, entries):
    entry, _ = vovnet19_d2(server, entries)
    with pytest.raises(CheckpointError, match=r'holds a VoVNet with stem_stride=4; this model '
                                              r'has stem_stride=2'):
        build_backbone('VoVNet-19', weights=entry.name)
    assert server.requests == {}  # refused before downloading
    with pytest.raises(CheckpointError, match=r"no public file of that name is for this VoVNet.*"
                                              r"vovnet-detectron2/V-19-eSE"):
        build_backbone('VoVNet-19', weights='vovnet-detectron2')
    with pytest.raises(CheckpointError, match=r"no public weights named 'test-d2/nope'; known"):
        load_weights(build_backbone('VoVNet-19-S4'), 'mmbackbones://test-d2/nope')


def test_every_config_door_takes_the_name(server, cache, entries):
    """MMEngine configs (our backbone's init_cfg, MMEngine's CheckpointLoader for
    any other module) resolve the same name through the same cache."""
    entry, state = vovnet19_d2(server, entries)
    cfg = Config(dict(backbone=dict(type='mmbackbones.VoVNet', depth=19, stem_stride=4,
                                    init_cfg=[dict(type='Kaiming', layer='Conv2d'),
                                              dict(type='Pretrained',
                                                   checkpoint='mmbackbones://' + entry.name)])))
    model = MODELS.build(cfg.backbone)
    model.init_weights()
    assert torch.equal(model.stage2[1].layers[0].conv.weight,
                       state['stage2.OSA2_1.layers.0.OSA2_1_0/conv.weight'])
    raw = CheckpointLoader.load_checkpoint('mmbackbones://' + entry.name)
    assert set(raw) == set(state)
    assert server.requests == {'V-19-eSE.pth': 1}


def test_timm_safetensors_and_torchvision_layouts(server, cache, entries):
    timm = pytest.importorskip('timm')
    from safetensors.torch import save as save_safetensors
    theirs = timm.create_model('ese_vovnet39b', pretrained=False)
    state = random_state(theirs)
    server.files['timm/ese/resolve/main/model.safetensors'] = save_safetensors(state)
    entry = entries(WeightsEntry('test-timm/ese_vovnet39b', server.url(
        'timm/ese/resolve/main/model.safetensors'), 'VoVNet',
        dict(depth=39, stem_stride=4, ese='last'), 'timm:ese_vovnet39b', 'test', 224))
    model = build_backbone('VoVNet-39-S4-lastESE', weights=entry.name)
    assert torch.equal(model.stem[0].conv.weight, state['stem.0.conv.weight'])

    import torchvision
    tv_state = random_state(torchvision.models.resnet18())
    data = saved(tv_state)
    name = f'resnet18-{hashlib.sha256(data).hexdigest()[:8]}.pth'
    server.files[name] = data
    entry = entries(WeightsEntry('test-tv/resnet18', server.url(name), 'ResNet',
                                 dict(depth=18), None, 'test', 224))
    report = load_weights(build_backbone('ResNet-18'), entry.name)
    assert report.set_aside == ['fc.weight', 'fc.bias']
    assert sorted(os.listdir(cache)) == sorted(
        [name, name + '.json', name + '.lock', 'timm--ese--model.safetensors',
         'timm--ese--model.safetensors.json', 'timm--ese--model.safetensors.lock'])


def test_truncated_corrupt_and_missing_files_leave_nothing(server, cache, entries):
    entry, _ = vovnet19_d2(server, entries)
    server.mode['V-19-eSE.pth'] = 'truncate'
    with pytest.raises(DownloadError, match='truncated'):
        build_backbone('VoVNet-19-S4', weights=entry.name)
    assert [f for f in os.listdir(cache) if not f.endswith('.lock')] == []

    data = bytearray(saved({'x': torch.zeros(3)}))
    published = hashlib.sha256(data).hexdigest()[:8]
    data[-40] ^= 0xFF  # one flipped byte: the published hash no longer matches
    server.files['resnet18.pth'] = bytes(data)
    with pytest.raises(DownloadError, match=r'is corrupt: its SHA-256 starts .*the published '
                                            r'hash is'):
        fetch(server.url('resnet18.pth'), sha256=published)
    assert [f for f in os.listdir(cache) if not f.endswith('.lock')] == []

    server.files['garbage.pth'] = os.urandom(4096)  # no hash to check: the read fails
    with pytest.raises(CheckpointError, match=r'garbage.pth.*not a readable checkpoint.*the file was '
                                              r'removed.*not a checkpoint'):
        load_weights(build_backbone('VoVNet-19-S4'), server.url('garbage.pth'))
    assert [f for f in os.listdir(cache) if not f.endswith('.lock')] == []  # its record too

    with pytest.raises(DownloadError, match='HTTP 404'):
        fetch(server.url('missing.pth'))


def test_a_stalled_server_times_out(server, cache, monkeypatch):
    server.files['slow.pth'] = saved({'x': torch.zeros(3)})
    server.mode['slow.pth'] = 'stall'
    monkeypatch.setenv('MMBACKBONES_DOWNLOAD_TIMEOUT', '0.5')
    started = time.monotonic()
    with pytest.raises(DownloadError, match=r'stalled: no data for 0.5 s'):
        fetch(server.url('slow.pth'))
    assert time.monotonic() - started < 10
    assert [f for f in os.listdir(cache) if not f.endswith('.lock')] == []


def _fetch_in_process(url, queue):
    queue.put(fetch(url, progress=False))


def test_two_processes_download_once(server, cache):
    server.files['shared.pth'] = saved({'x': torch.arange(10.0)})
    server.mode['shared.pth'] = 'slow'  # the second asks while the first downloads
    context = multiprocessing.get_context('fork')
    queue = context.Queue()
    workers = [context.Process(target=_fetch_in_process, args=(server.url('shared.pth'), queue))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    assert {queue.get(timeout=5), queue.get(timeout=5)} == {cache_path(server.url('shared.pth'))}
    assert server.requests == {'shared.pth': 1}


def test_offline_names_the_address_and_the_path_then_uses_a_file_put_there(server, cache,
                                                                           entries, monkeypatch):
    entry, state = vovnet19_d2(server, entries)
    monkeypatch.setenv('MMBACKBONES_OFFLINE', '1')
    target = cache / 'V-19-eSE.pth'
    with pytest.raises(DownloadError, match=rf'cannot download {entry.url}: offline mode.*'
                                            rf'Put the file at {target}'):
        build_backbone('VoVNet-19-S4', weights=entry.name)
    cache.mkdir(parents=True, exist_ok=True)
    target.write_bytes(server.files['V-19-eSE.pth'])
    with pytest.warns(UserWarning, match=r'no record of its download.*publishes no hash: its '
                                         r'SHA-256 [0-9a-f]{64} is now recorded'):
        model = build_backbone('VoVNet-19-S4', weights=entry.name)
    assert torch.equal(model.stem[0].conv.weight, state['stem.stem_1/conv.weight'])
    assert server.requests == {}
    monkeypatch.delenv('MMBACKBONES_OFFLINE')
    import socket
    with socket.socket() as free:  # a port nobody listens on: the connection is refused
        free.bind(('127.0.0.1', 0))
        port = free.getsockname()[1]
    with pytest.raises(DownloadError, match=r'cannot download .*no connection.*Put the file'):
        fetch(f'http://127.0.0.1:{port}/other.pth')


def test_the_catalog_lists_real_public_addresses():
    names = catalog()
    for depth, key in ((19, 'rptgw6stppbiw1u'), (39, 'q98pypf96rhtd8y'),
                       (57, '8xl0cb3jj51f45a'), (99, '1mlv31coewx8trd')):
        entry = names[f'vovnet-detectron2/V-{depth}-eSE']
        assert entry.url == (f'https://dl.dropbox.com/s/{key}/'
                             f'vovnet{depth}_ese_detectron2.pth')
        assert entry.normalization['order'] == 'BGR'
    tv = names['torchvision/ResNet50_Weights.IMAGENET1K_V1']
    assert tv.url == 'https://download.pytorch.org/models/resnet50-0676ba61.pth'
    assert tv.top1.startswith('76.13') and tv.resolution == 224
    # torch hub's and MMEngine's name, so their cached files are shared, and its hash
    assert tv.cache_name() == download.cache_name(tv.url) == 'resnet50-0676ba61.pth'
    assert published_hash(tv.url) == '0676ba61'
    assert published_hash(names['mmdet/darknet53'].url) == 'a628ea1b'
    for entry in names.values():  # Dropbox, the Hub and Detectron2's model zoo publish none:
        assert entry.sha256 or published_hash(entry.url) or entry.source in (  # recorded at
            'vovnet-detectron2', 'timm', 'detectron2'), entry.name  # the first download
    assert names['timm/ese_vovnet39b.ra_in1k'].url == (
        'https://huggingface.co/timm/ese_vovnet39b.ra_in1k/resolve/main/model.safetensors')
    assert cache_dir().endswith(os.path.join('hub', 'checkpoints')) or \
        os.environ.get('MMBACKBONES_WEIGHTS_DIR')


def test_mmdetection_and_mmpretrain_configs_take_the_name(server, cache, entries, det_root):
    """The public detection config (retinanet_vovnet39-public) and a classifier,
    with the name pointed at the local server's V-19 file."""
    from detection_utils import build_detector, on_demo_data
    from training_utils import ROOT
    entry, state = vovnet19_d2(server, entries)
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', 'detection',
                                       'retinanet_vovnet39-public_fpn_1x_coco.py'))
    init_cfg = cfg.model.backbone.init_cfg
    assert init_cfg.checkpoint == 'mmbackbones://vovnet-detectron2/V-39-eSE'
    cfg = on_demo_data(cfg, det_root)
    cfg.model.backbone.update(depth=19, init_cfg=dict(init_cfg, checkpoint='mmbackbones://'
                                                                           + entry.name))
    cfg.model.neck.in_channels = [256, 512, 768, 1024][1:]
    detector = build_detector(cfg)
    detector.init_weights()
    assert torch.equal(detector.backbone.stage4[1].concat_conv.conv.weight,
                       state['stage4.OSA4_1.concat.OSA4_1_concat/conv.weight'])

    from mmpretrain.registry import MODELS as CLS
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        classifier = CLS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='mmbackbones.VoVNet', depth=19, stem_stride=4, out_indices=(4, ),
                          init_cfg=dict(type='Pretrained', checkpoint='mmbackbones://'
                                                                      + entry.name)),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=10, in_channels=1024)))
    classifier.init_weights()
    assert torch.equal(classifier.backbone.stem[0].conv.weight, state['stem.stem_1/conv.weight'])
    assert server.requests == {'V-19-eSE.pth': 1}


@pytest.mark.skipif(not __import__('detectron2_utils').HAS_D2,
                    reason='Detectron2 is not installed (not on PyPI)')
def test_detectron2_yacs_and_lazy_take_the_name(server, cache, entries):
    from detectron2.config import LazyConfig, instantiate
    from detectron2.modeling import build_model
    from detectron2_utils import d2_cfg
    from mmbackbones.adapters import detectron2 as d2
    entry, state = vovnet19_d2(server, entries)
    cfg = d2_cfg(d2, 'retinanet', 'VoVNet', dict(depth=19, stem_stride=4))
    cfg.MODEL.MMBACKBONES.PRETRAINED = 'mmbackbones://' + entry.name
    body = build_model(cfg).backbone.bottom_up.body
    assert torch.equal(body.stem[0].conv.weight, state['stem.stem_1/conv.weight'])
    from training_utils import ROOT
    lazy = LazyConfig.load(os.path.join(ROOT, 'configs', 'detectron2', 'lazy',
                                        'retinanet_vovnet39_public_fpn.py'))
    body_cfg = lazy.model.backbone.bottom_up.body
    body_cfg.depth = 19
    body_cfg.init_cfg.checkpoint = 'mmbackbones://' + entry.name
    lazy.model.backbone.top_block.in_channels = 1024
    model = instantiate(lazy.model)
    assert torch.equal(model.backbone.bottom_up.body.stem[0].conv.weight,
                       state['stem.stem_1/conv.weight'])


def test_urls_with_the_same_last_part_never_share_a_cache_file(server, cache):
    """Two runs' epoch_12.pth, two Drive-style ``uc?id=`` links: four files, through
    load_weights and through MMEngine's CheckpointLoader (load_from, init_cfg)."""
    model = build_backbone('VoVNet-19-slim')
    runs = {}
    for run in ('exp_a', 'exp_b'):
        runs[run] = {k: v + len(runs) for k, v in random_state(model).items()}
        server.files[f'{run}/epoch_12.pth'] = saved({'state_dict': runs[run]})
    for run in ('exp_a', 'exp_b'):
        load_weights(model, server.url(f'{run}/epoch_12.pth'))
        assert torch.equal(model.stem[0].conv.weight, runs[run]['stem.0.conv.weight'])
    for key in ('AAA', 'BBB'):
        server.files[f'uc?id={key}'] = saved({'key': key})
    for key in ('AAA', 'BBB'):
        assert CheckpointLoader.load_checkpoint(server.url(f'uc?id={key}')) == {'key': key}
    names = ('exp_a/epoch_12.pth', 'exp_b/epoch_12.pth', 'uc?id=AAA', 'uc?id=BBB')
    assert server.requests == dict.fromkeys(names, 1)
    paths = [cache_path(server.url(name)) for name in names]
    assert len(set(paths)) == 4 and paths[0].endswith('-epoch_12.pth')
    with open(paths[3] + '.json') as f:  # the URL beside the file
        record = json.load(f)
    assert record['url'] == server.url('uc?id=BBB')
    assert record['sha256'] == hashlib.sha256(server.files['uc?id=BBB']).hexdigest()


def test_a_date_or_a_step_in_a_name_is_not_a_hash(server, cache):
    """Only torchvision's and OpenMMLab's hosts end their names in a hash."""
    model = build_backbone('VoVNet-19-slim')
    for name in ('model-20231201.pth', 'ckpt-000100.pth'):
        state = random_state(model)
        server.files[name] = saved({'state_dict': state})
        load_weights(model, server.url(name))
        assert torch.equal(model.stem[0].conv.weight, state['stem.0.conv.weight'])
        raw = CheckpointLoader.load_checkpoint(server.url(name))  # MMEngine's door
        assert torch.equal(raw['state_dict']['stem.0.conv.weight'], state['stem.0.conv.weight'])
        assert os.path.isfile(cache_path(server.url(name)))
    assert published_hash(server.url('resnet50-0676ba61.pth')) is None
    assert published_hash('https://example.com/models/resnet50-0676ba61.pth') is None
    assert published_hash('https://download.openmmlab.com/mmclassification/v0/resnet/'
                          'resnet50_8xb32_in1k_20210831-ea4938fc.pth') == 'ea4938fc'


def test_every_use_checks_the_file_against_its_published_or_recorded_hash(
        server, cache, entries, monkeypatch):
    # a URL whose source publishes no hash: its first download is recorded ...
    first = saved({'x': torch.arange(4.0)})
    server.files['run/latest.pth'] = first
    url = server.url('run/latest.pth')
    path = fetch(url, progress=False)
    good = hashlib.sha256(first).hexdigest()
    with open(path + '.json') as f:
        assert json.load(f) == dict(url=url, sha256=good, origin='first download',
                                    size=len(first), mtime_ns=os.stat(path).st_mtime_ns)
    # ... a file unchanged since (size and mtime) is not hashed again ...
    hashed = []
    file_sha256 = download.file_sha256
    monkeypatch.setattr(download, 'file_sha256', lambda p: hashed.append(p) or file_sha256(p))
    assert torch.equal(load_checkpoint(url)['x'], torch.arange(4.0)) and hashed == []
    # ... and one altered later is an error naming both hashes; it is left for the user
    altered = saved({'x': torch.zeros(4)})
    with open(path, 'wb') as f:
        f.write(altered)
    bad = hashlib.sha256(altered).hexdigest()
    with pytest.raises(DownloadError, match=rf'{path}, the cached file of {url}, changed since '
                                            rf'its first download: its SHA-256 is {bad}, the '
                                            rf'recorded one {good}'):
        load_checkpoint(url)
    assert hashed == [path] and os.path.isfile(path) and server.requests == {'run/latest.pth': 1}

    # a file put there by hand for a name whose source publishes no hash (the
    # Dropbox and Hub entries): recorded at its first use, and held to it after
    monkeypatch.setenv('MMBACKBONES_OFFLINE', '1')
    entry, state = vovnet19_d2(server, entries)
    target = cache / entry.cache_name()
    target.write_bytes(server.files['V-19-eSE.pth'])
    with pytest.warns(UserWarning, match=r'is now recorded'):
        build_backbone('VoVNet-19-S4', weights=entry.name)
    target.write_bytes(altered)
    with pytest.raises(DownloadError, match=r'changed since its first use: its SHA-256 is '
                                            rf'{bad}, the recorded one'):
        build_backbone('VoVNet-19-S4', weights=entry.name)

    # a source that publishes the hash: a file that does not match it is refused, whoever
    # put it there; the published file is taken without a warning
    published = hashlib.sha256(server.files['V-19-eSE.pth']).hexdigest()
    pinned = entries(dataclasses.replace(entry, name='test-d2/pinned', sha256=published[:10],
                                         url=server.url('pinned/V-19-eSE-pinned.pth')))
    placed = cache / pinned.cache_name()
    placed.write_bytes(altered)
    with pytest.raises(DownloadError, match=rf'is not the published file: its SHA-256 is {bad}, '
                                            rf'the published hash is {published[:10]}'):
        build_backbone('VoVNet-19-S4', weights=pinned.name)
    placed.write_bytes(server.files['V-19-eSE.pth'])
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        model = build_backbone('VoVNet-19-S4', weights=pinned.name)
    assert torch.equal(model.stem[0].conv.weight, state['stem.stem_1/conv.weight'])
    with open(str(placed) + '.json') as f:
        assert json.load(f)['origin'] == 'published'
    assert server.requests == {'run/latest.pth': 1}


def _fetch_as_a_user(urls, queue):
    if os.geteuid() == 0:  # root writes anywhere: be an ordinary user
        os.setgid(65534)
        os.setuid(65534)
    for url in urls:
        try:
            queue.put(fetch(url, progress=False))
        except Exception as err:  # noqa: BLE001 (the child reports whatever it got)
            queue.put(f'{type(err).__name__}: {err}')


def test_an_unwritable_cache_is_a_clear_error_and_a_read_only_one_still_serves(
        server, cache, monkeypatch):
    import tempfile
    folder = tempfile.mkdtemp()  # outside pytest's 0700 folders, so another user can enter
    try:
        monkeypatch.setenv('MMBACKBONES_WEIGHTS_DIR', folder)
        server.files['a.pth'] = saved({'x': torch.zeros(2)})
        there = server.url('there.pth')  # a shared, read-only cache that holds this one
        with open(cache_path(there), 'wb') as f:
            f.write(saved({'x': torch.ones(2)}))
        os.chmod(cache_path(there), 0o644)
        os.chmod(folder, 0o555)
        context = multiprocessing.get_context('fork')
        queue = context.Queue()
        child = context.Process(target=_fetch_as_a_user, args=([server.url('a.pth'), there],
                                                              queue))
        child.start()
        child.join(60)
        missing, present = queue.get(timeout=5), queue.get(timeout=5)
        assert missing == (f'DownloadError: cannot download {server.url("a.pth")} into the '
                           f'weights cache {folder}: it cannot be written (Permission denied). '
                           f'Set MMBACKBONES_WEIGHTS_DIR to a folder you can write (or to one '
                           f'that already holds the file)')
        assert present == cache_path(there)
        assert server.requests == {}
    finally:
        os.chmod(folder, 0o755)
        import shutil
        shutil.rmtree(folder)
