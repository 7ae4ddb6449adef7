"""Every example in README.md and docs/*.md runs, and every link resolves.

A page's ``python`` blocks run in order in one fresh interpreter (one namespace
per page, as a reader pastes them one after the other); each ``bash`` block runs
on its own. Both run in a scratch copy of the repository's layout (the tracked
folders linked, no ``work_dirs/``, ``data/`` or ``checkpoints/``), with the
project's virtual environment first on ``PATH``. An HTML comment right above a
block's fence steers it (docs/README.md#how-the-examples-are-tested):

    <!-- docs-test: needs gpu|detectron2|download|imagenet|coco -->
    <!-- docs-test: sub "as written" "as run" -->     tiny settings; repeatable
    <!-- docs-test: same-as docs/page.md -->          shown again: not run twice

A ``same-as`` block is not run: each of its lines must be, word for word, a line
of a shell block of that page which runs, so a command shown on two pages is
tested once and the two cannot drift apart.

A block that needs what the machine lacks is skipped with that reason; a
``needs`` outside that list is an error, so no block is skipped for comfort.
"""
import json
import os
import os.path as osp
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import pytest

from training_utils import ROOT

PAGES = ['README.md'] + sorted(
    osp.join('docs', name) for name in os.listdir(osp.join(ROOT, 'docs'))
    if name.endswith('.md'))
README_MAX_LINES = 200
RUNNABLE = {'python', 'bash', 'sh'}
NEEDS = {
    'gpu': 'needs a CUDA GPU',
    'detectron2': 'needs Detectron2 (not installable from PyPI)',
    'download': 'downloads from the internet',
    'imagenet': 'needs ImageNet on disk',
    'coco': 'needs COCO on disk',
}
DIRECTIVE = re.compile(r'<!--\s*docs-test:\s*(.*?)\s*-->')
FENCE = re.compile(r'^```(\S*)\s*$')
LINK = re.compile(r'(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)')
BLOCK_TIMEOUT_S = 600


@dataclass
class Block:
    page: str
    line: int  # the fence's line, 1-based
    language: str
    code: str
    needs: List[str] = field(default_factory=list)
    subs: List[Tuple[str, str]] = field(default_factory=list)
    same_as: Optional[str] = None

    @property
    def where(self) -> str:
        return f'{self.page}:{self.line}'

    def as_run(self) -> str:
        code = self.code
        for old, new in self.subs:
            if old not in code:
                raise AssertionError(f'{self.where}: docs-test sub {old!r} matches nothing')
            code = code.replace(old, new)
        return code


def read_blocks(page: str) -> List[Block]:
    lines = open(osp.join(ROOT, page), encoding='utf-8').read().splitlines()
    blocks, directives, i = [], [], 0
    while i < len(lines):
        found = DIRECTIVE.search(lines[i])
        fence = FENCE.match(lines[i])
        if found:
            directives.append((i + 1, found.group(1)))
        elif fence:
            start, body = i, []
            i += 1
            while not lines[i].startswith('```'):
                body.append(lines[i])
                i += 1
            block = Block(page, start + 1, fence.group(1), '\n'.join(body) + '\n')
            for where, text in directives:
                parse_directive(block, where, text)
            blocks.append(block)
            directives = []
        elif lines[i].strip():
            if directives:
                raise AssertionError(f'{page}:{directives[0][0]}: a docs-test directive '
                                     'must sit right above a code fence')
        i += 1
    return blocks


def parse_directive(block: Block, line: int, text: str) -> None:
    words = shlex.split(text)
    if words[0] == 'needs' and len(words) == 2 and words[1] in NEEDS:
        block.needs.append(words[1])
    elif words[0] == 'sub' and len(words) == 3:
        block.subs.append((words[1], words[2]))
    elif words[0] == 'same-as' and len(words) == 2 and words[1] in PAGES:
        block.same_as = words[1]
    else:
        raise AssertionError(f'{block.page}:{line}: unknown docs-test directive {text!r}; '
                             f'known: needs {"|".join(NEEDS)}, sub "OLD" "NEW", '
                             f'same-as PAGE (one of {", ".join(PAGES)})')


def missing_need(block: Block) -> Optional[str]:
    for need in block.needs:
        if need == 'gpu':
            import torch
            if torch.cuda.is_available():
                continue
        elif need == 'detectron2':
            import importlib.util
            if importlib.util.find_spec('detectron2') is not None:
                continue
        return f'{block.where}: {NEEDS[need]}'
    return None


ALL_BLOCKS = {page: read_blocks(page) for page in PAGES}


@pytest.fixture(scope='module')
def sandbox(tmp_path_factory) -> str:
    """The repository's layout with its top-level entries linked, except the
    folders examples write to (work_dirs/, data/, checkpoints/): absent, so
    the examples make what they need."""
    root = str(tmp_path_factory.mktemp('docs_sandbox'))
    for name in os.listdir(ROOT):
        if name not in {'work_dirs', 'data', 'checkpoints', '.git', '.pytest_cache'}:
            os.symlink(osp.join(ROOT, name), osp.join(root, name))
    return root


def run_env() -> Dict[str, str]:
    venv_bin = osp.dirname(sys.executable)
    return {**os.environ, 'PATH': venv_bin + os.pathsep + os.environ.get('PATH', ''),
            'PYTHONPATH': ROOT, 'OMP_NUM_THREADS': '2', 'MPLBACKEND': 'Agg'}


# one interpreter per page: each block compiled under the page's name with its own
# line numbers, so a traceback points into the markdown
PAGE_RUNNER = '''
import json, sys
namespace = {'__name__': '__main__'}
for where, first_line, code in json.load(open(sys.argv[1])):
    print(f'[docs-test] {where}', flush=True)
    page = where.rsplit(':', 1)[0]
    exec(compile('\\n' * first_line + code, page, 'exec'), namespace)
'''


def python_blocks(page: str):
    return [b for b in ALL_BLOCKS[page] if b.language == 'python']


def shell_blocks():
    return [b for page in PAGES for b in ALL_BLOCKS[page] if b.language in {'bash', 'sh'}]


def fail(block_or_page: str, result: subprocess.CompletedProcess) -> None:
    pytest.fail(f'{block_or_page} failed (exit {result.returncode}):\n'
                f'{result.stdout[-4000:]}\n{result.stderr[-6000:]}', pytrace=False)


@pytest.mark.parametrize('page', [p for p in PAGES if python_blocks(p)])
def test_python_examples_run(page, sandbox, tmp_path):
    runnable, skipped = [], []
    for block in python_blocks(page):
        reason = missing_need(block)
        # a page's later blocks build on its earlier ones: stop at the first one skipped
        if reason or skipped:
            skipped.append(reason or f'{block.where}: follows a skipped block')
        else:
            runnable.append((block.where, block.line, block.as_run()))
    blocks_file = tmp_path / 'blocks.json'
    blocks_file.write_text(json.dumps(runnable))
    result = subprocess.run([sys.executable, '-c', PAGE_RUNNER, str(blocks_file)],
                            cwd=sandbox, env=run_env(), capture_output=True, text=True,
                            timeout=BLOCK_TIMEOUT_S * max(1, len(runnable)))
    if result.returncode != 0:
        fail(page, result)
    if skipped:
        pytest.skip('; '.join(skipped))


def assert_shown_as_tested(block: Block) -> None:
    """Each line of a ``same-as`` block is a line of a block of that page that runs."""
    tested = {line.strip() for other in ALL_BLOCKS[block.same_as]
              if other.language in {'bash', 'sh'} and not other.same_as
              and not missing_need(other) for line in other.code.splitlines()}
    for line in block.code.splitlines():
        assert not line.strip() or line.strip() in tested, (
            f'{block.where}: {line.strip()!r} is not a line of a tested block of '
            f'{block.same_as}; make them the same, or drop the same-as directive')


@pytest.mark.slow  # the tools as subprocesses, some of them training
@pytest.mark.parametrize('block', shell_blocks(), ids=lambda b: b.where)
def test_shell_examples_run(block, sandbox):
    if block.same_as:
        assert_shown_as_tested(block)
        return
    reason = missing_need(block)
    if reason:
        pytest.skip(reason)
    result = subprocess.run(['bash', '-euo', 'pipefail', '-c', block.as_run()], cwd=sandbox,
                            env=run_env(), capture_output=True, text=True,
                            timeout=BLOCK_TIMEOUT_S)
    if result.returncode != 0:
        fail(block.where, result)


def github_slug(heading: str) -> str:
    text = re.sub(r'[`*]', '', heading.strip().lower())
    return re.sub(r'[^\w\- ]', '', text).replace(' ', '-')


def anchors(page: str) -> set:
    found, seen, fenced = set(), {}, False
    for line in open(osp.join(ROOT, page), encoding='utf-8'):
        if line.startswith('```'):
            fenced = not fenced
        elif not fenced and line.startswith('#'):
            slug = github_slug(line.lstrip('#'))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f'{slug}-{count}')
    return found


def page_links(page: str):
    text, fenced = [], False
    for line in open(osp.join(ROOT, page), encoding='utf-8'):
        if line.startswith('```'):
            fenced = not fenced
        elif not fenced:
            text.append(re.sub(r'`[^`]*`', '', line))
    for match in LINK.finditer(''.join(text)):
        yield match.group(1) or match.group(2)


@pytest.mark.parametrize('page', PAGES)
def test_links_resolve(page):
    broken = []
    for target in page_links(page):
        if re.match(r'[a-z]+://|mailto:', target):
            continue  # outside the machine: not reachable from tests
        path, _, anchor = target.partition('#')
        resolved = osp.normpath(osp.join(osp.dirname(page), path)) if path else page
        if not osp.exists(osp.join(ROOT, resolved)):
            broken.append(f'{target} (no file {resolved})')
        elif anchor and resolved.endswith('.md') and anchor not in anchors(resolved):
            broken.append(f'{target} (no heading #{anchor} in {resolved})')
    assert not broken, f'{page}: broken links: {broken}'


def test_readme_is_a_landing_page():
    lines = open(osp.join(ROOT, 'README.md'), encoding='utf-8').read().splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f'README.md has {len(lines)} lines; the reference belongs in docs/')
    linked = {osp.normpath(t.partition('#')[0]) for t in page_links('README.md')}
    unlinked = [p for p in PAGES[1:] if p not in linked]
    assert not unlinked, f'docs pages the README does not link: {unlinked}'


def test_directives_are_checked(tmp_path, monkeypatch):
    """The parser refuses what it does not know, and a sub that matches nothing."""
    page = tmp_path / 'page.md'
    page.write_text('<!-- docs-test: needs comfort -->\n```bash\ntrue\n```\n')
    monkeypatch.setattr(sys.modules[__name__], 'ROOT', str(tmp_path))
    with pytest.raises(AssertionError, match='unknown docs-test directive'):
        read_blocks('page.md')
    page.write_text('<!-- docs-test: sub "x" "y" -->\n\ntext\n```bash\ntrue\n```\n')
    with pytest.raises(AssertionError, match='right above a code fence'):
        read_blocks('page.md')
    page.write_text('<!-- docs-test: sub "absent" "y" -->\n```bash\ntrue\n```\n')
    with pytest.raises(AssertionError, match='matches nothing'):
        read_blocks('page.md')[0].as_run()
    shown = Block('page.md', 1, 'bash', 'python tools/train.py CONFIG --nothing\n',
                  same_as='README.md')
    with pytest.raises(AssertionError, match='not a line of a tested block of README.md'):
        assert_shown_as_tested(shown)
    shown.code = shell_blocks()[0].code  # the README's two commands, which run
    assert_shown_as_tested(shown)
    assert github_slug('Mixed precision (bf16, channels-last) on CPU') == \
        'mixed-precision-bf16-channels-last-on-cpu'
