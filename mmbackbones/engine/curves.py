"""Training curves from MMEngine's scalar logs (``<work_dir>/<timestamp>/vis_data/
scalars.json``, written by its LocalVisBackend), several runs on one figure."""
import glob
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

#: plotted when present and no keys are asked for
DEFAULT_KEYS = ('loss', 'lr', 'accuracy/top1', 'accuracy/top5', 'coco/bbox_mAP')
Curve = Tuple[List[float], List[float]]


def scalar_files(work_dir: str) -> List[str]:
    """The scalar logs of a run, oldest first (a resumed run adds one per start)."""
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    files += glob.glob(osp.join(work_dir, 'vis_data', 'scalars.json'))
    if not files:
        raise FileNotFoundError(f'no MMEngine scalar log under {work_dir} (expected '
                                f'{work_dir}/<timestamp>/vis_data/scalars.json)')
    return files


def read_curves(work_dir: str) -> Dict[str, Curve]:
    """``{key: (iterations, values)}``. Training records are logged by iteration,
    validation records by epoch: those are placed at the epoch's last iteration."""
    train, val, epoch_end = {}, {}, {}
    for path in scalar_files(work_dir):
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                step = record.pop('step')
                if 'iter' in record:  # a training record
                    epoch_end[record.get('epoch')] = max(epoch_end.get(record.get('epoch'), 0),
                                                         record['iter'])
                    target = train
                else:
                    target = val
                for key, value in record.items():
                    if isinstance(value, (int, float)) and key not in ('epoch', 'iter'):
                        xs, ys = target.setdefault(key, ([], []))
                        xs.append(step)
                        ys.append(float(value))
    for key, (epochs, values) in val.items():
        train[key] = ([epoch_end.get(e, e) for e in epochs], values)
    return train


def plot_runs(work_dirs: Sequence[str], keys: Optional[Sequence[str]], out: str,
              labels: Optional[Sequence[str]] = None) -> List[str]:
    """One panel per key, one line per run; writes ``out`` and returns the keys."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    runs = {label: read_curves(d) for label, d in zip(labels or work_dirs, work_dirs)}
    present = {k for curves in runs.values() for k in curves}
    keys = [k for k in (keys or DEFAULT_KEYS) if k in present]
    if not keys:
        raise ValueError(f'none of the keys are in the logs; logged: {sorted(present)}')
    figure, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.6), squeeze=False)
    for axis, key in zip(axes[0], keys):
        for label, curves in runs.items():
            if key in curves:
                xs, ys = curves[key]
                axis.plot(xs, ys, marker='o' if len(xs) < 30 else None, label=label)
        axis.set_title(key)
        axis.set_xlabel('iteration')
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return keys
