"""Parameter and FLOP counts against the reference table of DESIGN.md, and the
README's size table against what tools/get_flops.py measures."""
import re
from pathlib import Path

import pytest

from mmbackbones import build_backbone, list_variants
from mmbackbones.analysis import format_row, measure

# DESIGN.md: params (M), GFLOPs (2 x MACs) at 1x3x224x224, backbone only.
REFERENCE = {
    'Darknet-19': (19.82, 5.53),
    'Darknet-53': (40.58, 14.31),
    'CSPDarknet-53': (26.24, 9.44),
    'VoVNet-19-slim': (2.68, 4.85),
    'VoVNet-19': (10.18, 9.70),
    'VoVNet-39': (25.18, 15.62),
    'VoVNet-57': (41.45, 19.35),
    'VoVNet-99': (69.52, 34.51),
    'VoVNet-39-V1': (21.58, 15.61),
    'VoVNet-57-V1': (35.62, 19.33),
}
README = Path(__file__).resolve().parents[1] / 'README.md'


@pytest.fixture(scope='module')
def measured():
    return {name: measure(build_backbone(name)) for name in list_variants()}


@pytest.mark.parametrize('name', sorted(REFERENCE))
def test_matches_reference_table(name, measured):
    params_m, gflops = REFERENCE[name]
    got = measured[name]
    assert abs(got.params / 1e6 - params_m) <= 0.005 + 1e-9, got.params
    assert got.flops / 1e9 == pytest.approx(gflops, rel=0.01)


def test_every_variant_is_measured_and_printed(measured, capsys):
    # variants without a reference figure (CSPDarknet-19, V1 of -19/-99): print them
    for name, c in sorted(measured.items()):
        assert c.params > 0 and c.macs > 0
        if name not in REFERENCE:
            print(' | '.join(format_row(name, c)))
    assert 'CSPDarknet-19' in capsys.readouterr().out


def test_readme_size_table_is_the_tools_output(measured):
    text = README.read_text()
    for name, c in measured.items():
        row = '| ' + ' | '.join(format_row(name, c)) + ' |'
        assert row in text, f'README size table is stale for {name}: expected {row!r}; ' \
                            f'regenerate with `python tools/get_flops.py --all`'
