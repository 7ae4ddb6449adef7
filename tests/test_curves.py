"""tools/plot_curves.py on scalar logs written by MMEngine's own LocalVisBackend,
as its LoggerHook writes them (training by iteration, validation by epoch)."""
import pytest
from mmengine.visualization import LocalVisBackend

from mmbackbones.engine.curves import read_curves
from training_utils import run_tool


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


@pytest.mark.slow  # the tool as a subprocess
def test_plot_tool_draws_several_runs(tmp_path):
    fake_run(tmp_path / 'a', [3.0, 2.0, 1.5, 1.0])
    fake_run(tmp_path / 'b', [2.5, 1.5, 1.0, 0.5])
    out = tmp_path / 'curves.png'
    result = run_tool(['tools/plot_curves.py', str(tmp_path / 'a'), str(tmp_path / 'b'),
                       '--labels', 'a', 'b', '--out', str(out)])
    assert 'loss, lr, accuracy/top1' in result.stdout
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and out.stat().st_size > 10_000
    default = run_tool(['tools/plot_curves.py', str(tmp_path / 'b')])  # beside b's logs
    assert f"wrote {tmp_path / 'b' / 'curves.png'}" in default.stdout
    assert (tmp_path / 'b' / 'curves.png').is_file()
    missing = run_tool(['tools/plot_curves.py', str(tmp_path / 'nothing')], check=False)
    assert missing.returncode != 0 and 'no MMEngine scalar log' in missing.stderr
    wrong = run_tool(['tools/plot_curves.py', str(tmp_path / 'a'), '--keys', 'coco/bbox_mAP',
                      '--out', str(out)], check=False)
    assert wrong.returncode != 0 and "logged: ['accuracy/top1', 'loss', 'lr']" in wrong.stderr
