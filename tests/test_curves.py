"""tools/plot_curves.py on scalar logs written by MMEngine's own LocalVisBackend,
as its LoggerHook writes them (training by iteration, validation by epoch)."""
import os.path as osp
import sys

import pytest
from mmengine.visualization import LocalVisBackend

from mmbackbones.engine.curves import read_curves
from training_utils import ROOT, run_tool


def fake_run(work_dir, losses, iters_per_epoch=2, start='20260101_000000'):
    backend = LocalVisBackend(save_dir=str(work_dir / start / 'vis_data'))
    for i, loss in enumerate(losses, start=1):
        epoch = (i - 1) // iters_per_epoch + 1
        backend.add_scalars(dict(loss=loss, lr=0.1 * i, epoch=epoch, iter=i), step=i)
        if i % iters_per_epoch == 0:
            backend.add_scalars({'accuracy/top1': 10.0 * epoch}, step=epoch)
    backend.close()


def test_validation_points_sit_at_the_end_of_their_epoch(tmp_path):
    fake_run(tmp_path / 'a', [3.0, 2.0, 1.5, 1.0])
    fake_run(tmp_path / 'a', [0.9, 0.8], start='20260102_000000')  # a resumed start
    curves = read_curves(str(tmp_path / 'a'))
    assert curves['loss'] == ([1, 2, 3, 4, 1, 2], [3.0, 2.0, 1.5, 1.0, 0.9, 0.8])
    assert curves['accuracy/top1'][0][:2] == [2, 4]
    assert 'epoch' not in curves and 'iter' not in curves


@pytest.mark.slow  # the tool as a subprocess, once
def test_plot_tool_draws_several_runs(tmp_path, capsys):
    fake_run(tmp_path / 'a', [3.0, 2.0, 1.5, 1.0])
    fake_run(tmp_path / 'b', [2.5, 1.5, 1.0, 0.5])
    out = tmp_path / 'curves.png'
    result = run_tool(['tools/plot_curves.py', str(tmp_path / 'a'), str(tmp_path / 'b'),
                       '--labels', 'a', 'b', '--out', str(out)])
    assert 'loss, lr, accuracy/top1' in result.stdout
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and out.stat().st_size > 10_000
    # the other cases in this process (each subprocess spends ~5 s importing)
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    import plot_curves
    plot_curves.main([str(tmp_path / 'b')])  # beside b's logs
    assert f"wrote {tmp_path / 'b' / 'curves.png'}" in capsys.readouterr().out
    assert (tmp_path / 'b' / 'curves.png').is_file()
    with pytest.raises(FileNotFoundError, match='no MMEngine scalar log'):
        plot_curves.main([str(tmp_path / 'nothing')])
    with pytest.raises(ValueError, match=r"logged: \['accuracy/top1', 'loss', 'lr'\]"):
        plot_curves.main([str(tmp_path / 'a'), '--keys', 'coco/bbox_mAP', '--out', str(out)])
