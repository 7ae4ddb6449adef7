"""Pretrained loading from every source MMEngine resolves, strictly, and no
surprise from importing the package (file modes, symlinks, stock MMEngine
checkpoints, NumPy 1 pickles, torch's switch for trusted files)."""
import hashlib
import io
import os
import stat
import subprocess
import sys
import zipfile
from fractions import Fraction

import numpy as np
import pytest
import torch
import torchvision
from mmengine.logging import HistoryBuffer, MessageHub

import mmbackbones  # noqa: F401  (installs safe loading and atomic writes)
from mmbackbones import CheckpointError, build_backbone, load_weights
from mmbackbones.checkpoint import load_checkpoint, safe_load
from mmbackbones.download import cache_path
from mmbackbones.engine.atomic_io import atomic_write
from mmbackbones.publish import publish_checkpoint


def assert_loaded(model, state_dict, prefix=''):
    for key, value in model.state_dict().items():
        assert torch.equal(value, state_dict[prefix + key]), key


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache: a scheme resolves into it, nothing is downloaded."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    cache = tmp_path / 'torch_home' / 'hub' / 'checkpoints'
    cache.mkdir(parents=True)
    return cache


def cached_file(cache, url: str):
    return cache / url.rsplit('/', 1)[-1]


def test_torchvision_scheme_resolves_into_the_torch_hub_cache_and_checks_the_hash(torch_home):
    """torch hub's name for the file, and torchvision's published hash (the name's
    suffix) checked on use: a file there that is not torchvision's is refused,
    naming both hashes, and left in place."""
    from mmengine.runner.checkpoint import get_torchvision_models
    url = get_torchvision_models()['resnet18']
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), cached_file(torch_home, url))
    with open(cached_file(torch_home, url), 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    model = build_backbone('ResNet-18', init_cfg=dict(type='Pretrained',
                                                      checkpoint='torchvision://resnet18'))
    with pytest.raises(CheckpointError, match=rf'{cached_file(torch_home, url)}, the cached '
                                              rf'file of {url}, is not the published file: '
                                              rf'its SHA-256 is {digest}, the published hash '
                                              rf'is f37072fd'):
        model.init_weights()
    assert cached_file(torch_home, url).exists()


def test_url_and_open_mmlab_schemes_load_safely_from_the_cache(torch_home, tmp_path,
                                                               monkeypatch):
    # MMEngine's own way to point a name elsewhere: $MMENGINE_HOME/open_mmlab.json
    url = 'https://example.invalid/weights/darknet.pth'
    monkeypatch.setenv('MMENGINE_HOME', str(tmp_path / 'mmengine'))
    (tmp_path / 'mmengine').mkdir()
    (tmp_path / 'mmengine' / 'open_mmlab.json').write_text(f'{{"darknet53": "{url}"}}')
    state = build_backbone('Darknet-19').state_dict()
    torch.save({'state_dict': {'backbone.' + k: v for k, v in state.items()}}, cache_path(url))
    for source in (url, 'open-mmlab://darknet53'):
        model = build_backbone('Darknet-19', init_cfg=dict(type='Pretrained',
                                                           checkpoint=source, prefix='backbone'))
        model.init_weights()  # prefix without the trailing dot, as MMEngine accepts
        assert_loaded(model, state)
    # MMEngine's URL loader passes weights_only=False: ours still refuses code
    evil = 'https://example.invalid/weights/evil.pth'
    torch.save({'state_dict': state, 'f': os.system}, cache_path(evil))
    with pytest.raises(CheckpointError, match='refusing to load'):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError, match="knows no model named 'no_such_model'"):
        load_checkpoint('torchvision://no_such_model')


def test_home_relative_path(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    saved = build_backbone('VoVNet-19-slim').state_dict()
    torch.save(saved, tmp_path / 'w.pth')
    model = build_backbone('VoVNet-19-slim')
    # a fresh random init, so equality below means the file was read
    assert not torch.equal(model.stem[0].conv.weight, saved['stem.0.conv.weight'])
    load_weights(model, '~/w.pth')
    assert_loaded(model, saved)
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        load_weights(build_backbone('VoVNet-19-slim'), '~/missing.pth')


def test_list_init_cfg_is_strict_and_applies_the_others(tmp_path):
    darknet = tmp_path / 'darknet.pth'
    torch.save({'state_dict': {'backbone.' + k: v for k, v in
                               build_backbone('Darknet-53').state_dict().items()}}, darknet)
    wrong = build_backbone('VoVNet-39', init_cfg=[
        dict(type='Constant', layer='Conv2d', val=0.5),
        dict(type='Pretrained', checkpoint=str(darknet), prefix='backbone.')])
    with pytest.raises(CheckpointError, match='does not fit VoVNet'):
        wrong.init_weights()
    vovnet = build_backbone('VoVNet-19-slim')
    torch.save({'state_dict': {'backbone.' + k: v for k, v in vovnet.state_dict().items()}},
               tmp_path / 'vov.pth')
    model = build_backbone('VoVNet-19-slim', init_cfg=[
        dict(type='Constant', layer='Conv2d', val=0.5),
        dict(type='Pretrained', checkpoint=str(tmp_path / 'vov.pth'), prefix='backbone.')])
    model.init_weights()
    assert_loaded(model, vovnet.state_dict())  # Pretrained runs last, as in MMEngine
    constant = build_backbone('VoVNet-19-slim', init_cfg=[
        dict(type='Constant', layer='Conv2d', val=0.5)])
    constant.init_weights()
    assert (constant.stem[0].conv.weight == 0.5).all()


def stock_runner_checkpoint(path):
    """What stock MMEngine writes: HistoryBuffer pickles its statistics as
    getattr(HistoryBuffer, name), numpy scalars in the runtime info."""
    hub = MessageHub('stock')
    hub.update_scalar('train/loss', 1.5)
    hub.update_info('iter', np.int64(3))
    torch.save({'meta': {'epoch': 1}, 'message_hub': hub.state_dict(),
                'state_dict': {'w': torch.ones(2)}}, path)


def test_importing_keeps_mmengine_pickling_and_loads_stock_checkpoints(tmp_path):
    assert HistoryBuffer.__getstate__.__module__ == 'mmengine.logging.history_buffer'
    path = tmp_path / 'stock.pth'
    stock_runner_checkpoint(path)
    with zipfile.ZipFile(path) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith('data.pkl')))
    assert b'getattr' in data  # the statistics really are pickled that way
    checkpoint = safe_load(path)
    buffer = checkpoint['message_hub']['log_scalars']['train/loss']
    assert buffer.current() == 1.5 and buffer.mean() == 1.5
    from mmengine.runner.checkpoint import _load_checkpoint  # resume and load_from
    assert _load_checkpoint(str(path))['meta']['epoch'] == 1


def test_getattr_is_allowed_only_for_history_buffer_statistics(tmp_path):
    path = tmp_path / 'evil.pth'

    class Exploit:
        def __reduce__(self):
            return getattr, (HistoryBuffer, '__init__')
    torch.save({'x': Exploit()}, path)
    with pytest.raises(CheckpointError, match="only HistoryBuffer statistics"):
        safe_load(path)


def numpy1_pickle(path):
    """A legacy-format torch file whose numpy scalar is named as NumPy 1 names it."""
    buffer = io.BytesIO()
    torch.save({'epoch': np.float64(2.5)}, buffer, _use_new_zipfile_serialization=False)
    data = buffer.getvalue()
    assert b'numpy._core.multiarray' in data
    path.write_bytes(data.replace(b'numpy._core.multiarray', b'numpy.core.multiarray'))


def test_numpy1_names_load(tmp_path):
    path = tmp_path / 'np1.pth'
    numpy1_pickle(path)
    assert safe_load(path)['epoch'] == 2.5


def test_torch_switch_for_trusted_files_works_with_a_warning(tmp_path, monkeypatch):
    path = tmp_path / 'trusted.pth'
    torch.save({'state_dict': {}, 'obj': Fraction(1, 3)}, path)  # not in the allow-list
    with pytest.raises(CheckpointError, match='TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'):
        safe_load(path)
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    with pytest.warns(UserWarning, match='weights_only=False'):
        assert safe_load(path)['obj'] == Fraction(1, 3)


@pytest.mark.parametrize('umask', [0o022, 0o002])
def test_atomic_writes_keep_umask_modes_and_write_through_symlinks(tmp_path, umask):
    old = os.umask(umask)
    try:
        from mmengine.fileio import get_file_backend
        backend = get_file_backend(str(tmp_path))
        backend.put(b'abc', str(tmp_path / 'new.pth'))
        assert stat.S_IMODE(os.stat(tmp_path / 'new.pth').st_mode) == 0o666 & ~umask
        os.chmod(tmp_path / 'new.pth', 0o640)
        atomic_write(b'def', tmp_path / 'new.pth')  # an existing file keeps its mode
        assert stat.S_IMODE(os.stat(tmp_path / 'new.pth').st_mode) == 0o640
        (tmp_path / 'shared').mkdir()
        target = tmp_path / 'shared' / 'real.pth'
        target.write_bytes(b'old')
        os.symlink(target, tmp_path / 'link.pth')
        backend.put(b'new', str(tmp_path / 'link.pth'))
        assert os.path.islink(tmp_path / 'link.pth') and target.read_bytes() == b'new'
    finally:
        os.umask(old)


def test_import_changes_no_file_mode_in_a_fresh_process(tmp_path):
    """mmengine.save_checkpoint before and after importing mmbackbones."""
    code = ('import os, sys, torch; os.umask(0o022)\n'
            'from mmengine.runner.checkpoint import save_checkpoint\n'
            'save_checkpoint({"w": torch.ones(1)}, sys.argv[1] + "/a.pth")\n'
            'import mmbackbones\n'
            'save_checkpoint({"w": torch.ones(1)}, sys.argv[1] + "/b.pth")\n')
    subprocess.run([sys.executable, '-c', code, str(tmp_path)], check=True)
    modes = {n: stat.S_IMODE(os.stat(tmp_path / n).st_mode) for n in ('a.pth', 'b.pth')}
    assert modes == {'a.pth': 0o644, 'b.pth': 0o644}


def test_publish_links_the_stable_name_the_configs_use(tmp_path):
    src = tmp_path / 'epoch_3.pth'
    torch.save({'state_dict': {'backbone.w': torch.ones(2)}, 'meta': {'epoch': 3}}, src)
    out = tmp_path / 'checkpoints' / 'vovnet39_imagenet.pth'
    first = publish_checkpoint(str(src), str(out))
    assert os.path.islink(out) and os.path.realpath(out) == os.path.realpath(first)
    torch.save({'state_dict': {'backbone.w': torch.zeros(2)}, 'meta': {'epoch': 4}}, src)
    second = publish_checkpoint(str(src), str(out))
    assert second != first and os.path.realpath(out) == os.path.realpath(second)
    assert torch.load(out, weights_only=True)['meta']['epoch'] == 4
    plain = tmp_path / 'plain.pth'
    plain.write_bytes(b'user data')
    with pytest.raises(FileExistsError, match='not a symlink'):
        publish_checkpoint(str(src), str(plain))
    assert plain.read_bytes() == b'user data'


def test_publish_tool_reports_a_missing_input_without_a_traceback(tmp_path):
    from training_utils import run_tool
    result = run_tool(['tools/publish_model.py', str(tmp_path / 'nope.pth'),
                       str(tmp_path / 'out.pth')], check=False)
    assert result.returncode != 0
    assert 'Traceback' not in result.stderr
    assert f'checkpoint {tmp_path / "nope.pth"} does not exist' in result.stderr


def test_safe_loading_restores_the_allow_list_and_sets_no_environment(tmp_path, torch_home):
    """Re-entrant, thread-safe, and the user's own allow-list entries survive."""
    import threading
    from mmbackbones.checkpoint import SAFE_GLOBALS, safe_loading
    get = torch.serialization.get_safe_globals
    before, environment = list(get()), dict(os.environ)
    torch.serialization.add_safe_globals([HistoryBuffer])  # a user's own workaround
    try:
        inside, leave = threading.Event(), threading.Event()

        def hold():
            with safe_loading():
                inside.set()
                leave.wait(10)
        holder = threading.Thread(target=hold)
        holder.start()
        inside.wait(10)
        url = 'https://example.invalid/checkpoints/evil.pth'
        torch.save({'f': os.system}, cache_path(url))
        with safe_loading():
            assert all(g in get() for g in SAFE_GLOBALS)
            with pytest.raises(CheckpointError, match='refusing to load'):
                load_checkpoint(url)  # MMEngine's URL loader would unpickle it
        leave.set()
        holder.join()
        assert HistoryBuffer in get() and dict(os.environ) == environment
        from mmengine.runner.checkpoint import _load_checkpoint  # the Runner's path
        with pytest.raises(CheckpointError, match='refusing to load'):
            _load_checkpoint(url)
    finally:
        from torch import _weights_only_unpickler
        _weights_only_unpickler._remove_safe_globals([HistoryBuffer])
    left = [g for g in get() if g not in before]  # other imports may add their own
    assert not [g for g in SAFE_GLOBALS if g in left], 'the allow-list was not restored'
