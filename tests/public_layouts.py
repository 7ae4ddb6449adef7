"""State dicts in public checkpoints' own layouts, written from their specs."""
import torch


# vovnet-detectron2's _STAGE_SPECS: stage conv channels, out channels, layers, modules
D2_SPECS = {19: ((128, 160, 192, 224), (256, 512, 768, 1024), 3, (1, 1, 1, 1)),
            39: ((128, 160, 192, 224), (256, 512, 768, 1024), 5, (1, 1, 2, 2)),
            57: ((128, 160, 192, 224), (256, 512, 768, 1024), 5, (1, 1, 4, 3)),
            99: ((128, 160, 192, 224), (256, 512, 768, 1024), 5, (1, 3, 9, 3))}


def vovnet_detectron2_state(depth: int):
    """A state dict in vovnet-detectron2's naming, written from its spec (with
    Detectron2's FrozenBN: no num_batches_tracked), every tensor distinct."""
    state, counter = {}, iter(range(1, 10 ** 6))

    def unit(name, cin, cout, k):
        state[f'{name}/conv.weight'] = torch.full((cout, cin, k, k), float(next(counter)))
        for p in ('weight', 'bias', 'running_mean', 'running_var'):
            state[f'{name}/norm.{p}'] = torch.full((cout, ), float(next(counter)))

    unit('stem.stem_1', 3, 64, 3)
    unit('stem.stem_2', 64, 64, 3)
    unit('stem.stem_3', 64, 128, 3)
    mids, outs, layers, modules = D2_SPECS[depth]
    cin = 128
    for s, (mid, out, n) in enumerate(zip(mids, outs, modules), start=2):
        for m in range(1, n + 1):
            name = f'stage{s}.OSA{s}_{m}'
            for i in range(layers):
                unit(f'{name}.layers.{i}.OSA{s}_{m}_{i}', cin if i == 0 else mid, mid, 3)
            unit(f'{name}.concat.OSA{s}_{m}_concat', cin + layers * mid, out, 1)
            state[f'{name}.ese.fc.weight'] = torch.full((out, out, 1, 1), float(next(counter)))
            state[f'{name}.ese.fc.bias'] = torch.full((out, ), float(next(counter)))
            cin = out
    return state
