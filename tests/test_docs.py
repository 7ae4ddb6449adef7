"""Every example in README.md and docs/*.md runs, shows what it prints, and every
link resolves.

A page's ``python`` blocks run in order in one fresh interpreter (one namespace
per page, as a reader pastes them one after the other), each reported as a test of
its own; each ``bash`` block runs on its own. Both run in a scratch copy of the
repository's layout (the tracked folders linked, no ``work_dirs/``, ``data/`` or
``checkpoints/``), with the project's virtual environment first on ``PATH``.

What a page shows is checked (docs/README.md#how-the-examples-are-tested): a
``print(...)``'s output comment is compared with what it printed (``...``: any
text), so a shown refusal must be raised with its message; in a shell block an
``ls``/``cat``/``echo`` line's comment, and so a shown ``exit status N``.

An HTML comment right above a block's fence steers it:

    <!-- docs-test: needs gpu|detectron2 -->           skipped on a machine without it
    <!-- docs-test: needs download -->                 stand-ins served from 127.0.0.1
    <!-- docs-test: data imagenet|imagenet-kaggle|coco -->   tiny sets made first
    <!-- docs-test: sub "as written" "as run" -->     tiny settings; repeatable
    <!-- docs-test: same-as docs/page.md -->          shown again: not run twice

A ``same-as`` block is not run: each of its lines must be, word for word, a line
of a shell block of that page which runs, so a command shown on two pages is
tested once and the two cannot drift apart.

A block that needs what the machine lacks is skipped with that reason; a
``needs`` outside that list is an error, so no block is skipped for comfort.
"""
import ast
import inspect
import io
import json
import os
import os.path as osp
import re
import shlex
import subprocess
import sys
import threading
import tokenize
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Tuple
from urllib.parse import unquote

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
}
# a page's blocks that download run against stand-ins served from 127.0.0.1
USES = {'download'}
# data a block reads, made tiny in the sandbox from the demo digits before it runs
DATA = {
    'imagenet': 'data/imagenet/{train,val}/<wnid>/*.JPEG: ImageNet\'s 1000 class folders (as '
                'MMPretrain checks), 4 + 2 images in two of them',
    'imagenet-kaggle': "ImageNet/: Kaggle's download (ILSVRC/Data/CLS-LOC/{train,val}, the "
                       'validation images flat, LOC_val_solution.csv): the same images',
    'coco': 'data/coco/: annotations/instances_{train,val}2017.json, {train,val}2017/: '
            '8 + 4 digits canvases, the digits as COCO\'s first 10 of its 80 classes',
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
    uses: List[str] = field(default_factory=list)
    data: List[str] = field(default_factory=list)

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
    elif words[0] == 'needs' and len(words) == 2 and words[1] in USES:
        block.uses.append(words[1])
    elif words[0] == 'data' and len(words) == 2 and words[1] in DATA:
        block.data.append(words[1])
    elif words[0] == 'sub' and len(words) == 3:
        block.subs.append((words[1], words[2]))
    elif words[0] == 'same-as' and len(words) == 2 and words[1] in PAGES:
        block.same_as = words[1]
    else:
        raise AssertionError(f'{block.page}:{line}: unknown docs-test directive {text!r}; '
                             f'known: needs {"|".join([*NEEDS, *USES])}, data {"|".join(DATA)}, '
                             f'sub "OLD" "NEW", '
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


class StandIns(ThreadingHTTPServer):
    """Serves, for each public weights URL a block downloads, a stand-in of the same
    format written from a randomly initialised model: ``/<the URL, quoted>``.
    The page's interpreter sends its downloads here (``STAND_IN_HOOK``)."""
    daemon_threads = True

    def __init__(self):
        super().__init__(('127.0.0.1', 0), StandInHandler)
        self.made: Dict[str, bytes] = {}
        self.lock = threading.Lock()

    @property
    def address(self) -> str:
        return f'http://127.0.0.1:{self.server_address[1]}'

    def body(self, url: str) -> bytes:
        with self.lock:
            if url not in self.made:
                self.made[url] = stand_in(url)
            return self.made[url]


class StandInHandler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        try:
            body = self.server.body(unquote(self.path.lstrip('/')))
        except LookupError as err:
            self.send_error(404, str(err))
            return
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def stand_in(url: str) -> bytes:
    """A file in the format ``url`` publishes, from a randomly initialised model:
    timm's safetensors from the Hub, a catalog entry's own layout otherwise."""
    import io

    import safetensors.torch
    import torch

    from mmbackbones.weights.catalog import catalog
    from public_layouts import vovnet_detectron2_state
    hub = re.match(r'https://huggingface\.co/timm/([^/]+)/resolve/', url)
    if hub:
        import timm
        state = timm.create_model(hub.group(1).split('.')[0]).state_dict()
        return safetensors.torch.save({k: v.contiguous() for k, v in state.items()})
    entry = next((e for e in catalog().values() if e.url == url), None)
    if entry is None:
        raise LookupError(f'no stand-in for {url}: not a catalog entry or a timm Hub file')
    if entry.layout and entry.layout.startswith('vovnet-detectron2'):
        state = vovnet_detectron2_state(entry.kwargs['depth'])
    elif entry.name.startswith('torchvision/'):
        state = torchvision_model(entry.name).state_dict()
    else:
        raise LookupError(f'no stand-in for {entry.name}: add its format here')
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def torchvision_model(name: str):
    """torchvision's randomly initialised model for ``torchvision/<Weights>.<TAG>``."""
    import torchvision
    from mmbackbones.weights.catalog import TORCHVISION_PORTS
    weights = torchvision.models.get_weight(name.split('/', 1)[1])
    builder = next(b for b in TORCHVISION_PORTS
                   if weights in list(torchvision.models.get_model_weights(b)))
    return torchvision.models.get_model(builder)


def seed_hash_named(server: StandIns, block: Block, folder: str) -> None:
    """torchvision's files are named by their SHA-256, which no stand-in has: the
    ones a block names (``build_backbone(NAME, weights=TAG)``) are put in the
    cache with a record of that hash, which the cache trusts while the file's size
    and modification time are the recorded ones (mmbackbones/download.py)."""
    from mmbackbones import build_backbone
    from mmbackbones.api import resolve_weights
    from mmbackbones.download import _record, cache_path, published_hash
    from mmbackbones.weights.catalog import lookup
    for name, weights in re.findall(r"build_backbone\('([^']+)', weights='([^']+)'\)",
                                    block.code):
        entry = lookup(resolve_weights(build_backbone(name), weights))
        expected = published_hash(entry.url)
        if not expected:
            continue  # downloaded from the server
        path = osp.join(folder, osp.basename(cache_path(entry.url)))
        with open(path, 'wb') as f:
            f.write(server.body(entry.url))
        record = _record(entry.url, path, expected + '0' * (64 - len(expected)), 'published')
        with open(path + '.json', 'w') as f:
            json.dump(record, f)


# run first in a page's interpreter: its downloads go to the stand-ins, never beyond
# 127.0.0.1 (mmbackbones/download.py opens every URL with urllib.request.urlopen)
STAND_IN_HOOK = """
import os, urllib.parse, urllib.request
_urlopen = urllib.request.urlopen


def _to_stand_ins(request, *args, **kwargs):
    url = request.full_url if isinstance(request, urllib.request.Request) else request
    local = os.environ['DOCS_TEST_STAND_INS'] + '/' + urllib.parse.quote(url, safe='')
    return _urlopen(urllib.request.Request(local, headers={'User-Agent': 'docs-test'}),
                    *args, **kwargs)


urllib.request.urlopen = _to_stand_ins
"""


@pytest.fixture(scope='module')
def stand_ins():
    server = StandIns()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


WNIDS = ('n01440764', 'n01443537')  # ImageNet's first two classes
# COCO's category ids (80 of 1..90); the digits' ids 1..10 are COCO's first ten
COCO_IDS = (*range(1, 12), *range(13, 26), 27, 28, *range(31, 45), *range(46, 66), 67, 70,
            *range(72, 83), *range(84, 91))


def make_data(name: str, root: str) -> None:
    """Write ``DATA[name]`` under ``root`` (the sandbox) unless it is there, from
    the demo digits that ``tools/make_demo_data.py`` writes."""
    import shutil

    from mmdet.datasets import CocoDataset

    from mmbackbones.datasets import make_digits_classification, make_digits_detection
    if name in ('imagenet', 'imagenet-kaggle'):
        digits = osp.join(root, 'data', 'digits')
        make_digits_classification(digits)
        images = {(split, wnid): sorted(os.listdir(osp.join(digits, split, f'digit{i}')))[:n]
                  for split, n in (('train', 4), ('val', 2)) for i, wnid in enumerate(WNIDS)}

        def copy(split: str, wnid: str, name: str, target: str) -> None:
            os.makedirs(osp.dirname(target), exist_ok=True)
            shutil.copyfile(osp.join(digits, split, f'digit{WNIDS.index(wnid)}', name), target)
    if name == 'imagenet' and not osp.exists(osp.join(root, 'data', 'imagenet')):
        for (split, wnid), names in images.items():
            for k, image in enumerate(names):
                copy(split, wnid, image,
                     osp.join(root, 'data', 'imagenet', split, wnid, f'{wnid}_{k}.JPEG'))
        # MMPretrain's ImageNet wants its 1000 class folders; the others stay empty
        for split in ('train', 'val'):
            for i in range(len(WNIDS), 1000):
                os.makedirs(osp.join(root, 'data', 'imagenet', split, f'n{i:08d}'))
    elif name == 'imagenet-kaggle' and not osp.exists(osp.join(root, 'ImageNet')):
        top = osp.join(root, 'ImageNet', 'ILSVRC', 'Data', 'CLS-LOC')
        rows, index = ['ImageId,PredictionString'], 0
        for (split, wnid), names in images.items():
            for k, image in enumerate(names):
                if split == 'train':
                    copy(split, wnid, image, osp.join(top, 'train', wnid, f'{wnid}_{k}.JPEG'))
                else:
                    index += 1
                    copy(split, wnid, image,
                         osp.join(top, 'val', f'ILSVRC2012_val_{index:08d}.JPEG'))
                    rows.append(f'ILSVRC2012_val_{index:08d},{wnid} 0 0 63 63')
        with open(osp.join(root, 'ImageNet', 'LOC_val_solution.csv'), 'w') as f:
            f.write('\n'.join(rows) + '\n')
    elif name == 'coco' and not osp.exists(osp.join(root, 'data', 'coco')):
        digits = osp.join(root, 'data', 'digits_det')
        make_digits_detection(digits)
        for split, count in (('train', 8), ('val', 4)):
            with open(osp.join(digits, 'annotations', f'{split}.json')) as f:
                coco = json.load(f)
            coco['images'] = coco['images'][:count]
            kept = {image['id'] for image in coco['images']}
            coco['annotations'] = [a for a in coco['annotations'] if a['image_id'] in kept]
            # all of COCO's classes, as MMDetection's and Detectron2's COCO loaders check
            coco['categories'] = [dict(id=i, name=name) for i, name in
                                  zip(COCO_IDS, CocoDataset.METAINFO['classes'])]
            os.makedirs(osp.join(root, 'data', 'coco', 'annotations'), exist_ok=True)
            with open(osp.join(root, 'data', 'coco', 'annotations',
                               f'instances_{split}2017.json'), 'w') as f:
                json.dump(coco, f)
            for image in coco['images']:
                target = osp.join(root, 'data', 'coco', f'{split}2017', image['file_name'])
                os.makedirs(osp.dirname(target), exist_ok=True)
                shutil.copyfile(osp.join(digits, split, image['file_name']), target)


def run_env() -> Dict[str, str]:
    import torch
    venv_bin = osp.dirname(sys.executable)
    # a block's tools get this worker's share of the cores (tests/conftest.py): a
    # 2-thread process beside another busy worker stalls at every OpenMP barrier
    return {**os.environ, 'PATH': venv_bin + os.pathsep + os.environ.get('PATH', ''),
            'PYTHONPATH': ROOT, 'OMP_NUM_THREADS': str(torch.get_num_threads()),
            'MPLBACKEND': 'Agg'}


def output_matches(expected: str, got: str) -> bool:
    """Whether ``got`` is the output a page shows, ``expected``: '...' stands for any
    text (numbers that vary by machine, a message cut short), the spaces around it
    included."""
    pattern = '.*?'.join(re.escape(part) for part in re.split(r'\s*\.\.\.\s*', expected))
    return re.fullmatch(pattern, got, re.DOTALL) is not None


# One interpreter per page: each block compiled under the page's name with its own
# line numbers, so a traceback points into the markdown. What a block prints goes
# through a tee that notes the page line of each write, so a print's output can be
# compared with the output comment shown for it. A block's result is written as soon
# as it is known: a page that times out still reports its earlier blocks.
PAGE_RUNNER = """
import json, re, sys, traceback
blocks_file, results_file = sys.argv[1], sys.argv[2]
namespace = {'__name__': '__main__'}
writes = []


class Tee:
    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        caller = sys._getframe(1)
        writes.append((caller.f_code.co_filename, caller.f_lineno, text))
        return self.stream.write(text)

    def __getattr__(self, name):
        return getattr(self.stream, name)


sys.stdout = Tee(sys.stdout)
results = {}
for where, first_line, code, checks in json.load(open(blocks_file)):
    print(f'[docs-test] {where}', flush=True)
    page = where.rsplit(':', 1)[0]
    del writes[:]
    try:
        exec(compile('\\n' * first_line + code, page, 'exec'), namespace)
    except BaseException:
        results[where] = {'status': 'failed', 'message': traceback.format_exc(), 'stop': 1}
    else:
        wrong = []
        for start, end, expected in checks:
            got = ''.join(t for f, n, t in writes if f == page and start <= n <= end)
            got = '\\n'.join(line.rstrip() for line in got.rstrip('\\n').split('\\n'))
            if not got:
                wrong.append(f'{page}:{start}: printed nothing; the page shows {expected!r}')
            elif not output_matches(expected, got):
                wrong.append(f'{page}:{start}: printed {got!r}; the page shows {expected!r}')
        results[where] = ({'status': 'failed', 'message': '\\n'.join(wrong)} if wrong
                          else {'status': 'passed'})
    json.dump(results, open(results_file, 'w'))
    if results[where].get('stop'):  # what later blocks use may be missing
        break
""".replace('sys.stdout = Tee', inspect.getsource(output_matches) + '\n\nsys.stdout = Tee')


def shown_outputs(block: Block) -> List[Tuple[int, int, str]]:
    """``(first page line, last page line, output)`` of every ``print(...)`` statement
    of a python block that shows its output: the comment ending its last line, or,
    with none there, the comment lines right below it. A ``print`` in an ``except``
    clause (a shown refusal) must show its output, so the refusal is asserted."""
    code = block.as_run()
    lines = code.splitlines()
    comments = {tok.start[0]: tok.string[1:].strip()
                for tok in tokenize.generate_tokens(io.StringIO(code).readline)
                if tok.type == tokenize.COMMENT}
    tree = ast.parse(code)
    in_except = {id(node) for handler in ast.walk(tree)
                 if isinstance(handler, ast.ExceptHandler) for node in ast.walk(handler)}
    shown = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Name) and node.value.func.id == 'print'):
            continue
        end = node.end_lineno
        if end in comments and lines[end - 1].lstrip()[:1] != '#':
            output = comments[end]
        else:
            below = []
            while end + len(below) < len(lines) and \
                    lines[end + len(below)].lstrip().startswith('#'):
                below.append(comments[end + len(below) + 1])
            output = '\n'.join(below)
        if output:
            shown.append((block.line + node.lineno, block.line + node.end_lineno, output))
        elif id(node) in in_except:
            raise AssertionError(
                f'{block.page}:{block.line + node.lineno}: a refusal prints its message '
                'without showing it: add the output as a comment (`...` for any text), '
                'so the test checks that it is raised and says that')
    return shown


def python_blocks(page: str):
    return [b for b in ALL_BLOCKS[page] if b.language == 'python']


def shell_blocks():
    return [b for page in PAGES for b in ALL_BLOCKS[page] if b.language in {'bash', 'sh'}]


def fail(block_or_page: str, result: subprocess.CompletedProcess) -> None:
    pytest.fail(f'{block_or_page} failed (exit {result.returncode}):\n'
                f'{result.stdout[-4000:]}\n{result.stderr[-6000:]}', pytrace=False)


PAGE_RESULTS: Dict[str, Dict[str, dict]] = {}


def run_python_page(page: str, sandbox: str, folder: str,
                    stand_ins: StandIns) -> Dict[str, dict]:
    """Run a page's python blocks in one interpreter, up to the first that is
    skipped or raises (a wrong output does not stop it); every block gets a result
    of its own."""
    results, runnable = {}, []
    for block in python_blocks(page):
        reason = missing_need(block)
        if reason:
            # a page's later blocks build on its earlier ones: stop at the first one skipped
            results[block.where] = {'status': 'skipped', 'message': reason}
            break
        runnable.append((block.where, block.line, block.as_run(), shown_outputs(block)))
    blocks_file, results_file = osp.join(folder, 'blocks.json'), osp.join(folder, 'results.json')
    with open(blocks_file, 'w') as f:
        json.dump(runnable, f)
    env, runner = run_env(), PAGE_RUNNER
    if any('download' in b.uses for b in python_blocks(page)):
        cache = osp.join(folder, 'weights')
        os.makedirs(cache)
        for block in python_blocks(page):
            if 'download' in block.uses:
                seed_hash_named(stand_ins, block, cache)
        env = {k: v for k, v in env.items() if k not in ('MMBACKBONES_OFFLINE', 'HF_HUB_OFFLINE')}
        env.update(DOCS_TEST_STAND_INS=stand_ins.address, MMBACKBONES_WEIGHTS_DIR=cache)
        runner = STAND_IN_HOOK + runner
    try:
        result = subprocess.run([sys.executable, '-c', runner, blocks_file, results_file],
                                cwd=sandbox, env=env, capture_output=True, text=True,
                                timeout=BLOCK_TIMEOUT_S * max(1, len(runnable)))
        output = f'exit {result.returncode}:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}'
    except subprocess.TimeoutExpired as err:
        output = f'timed out after {err.timeout} s'
    ran = json.load(open(results_file)) if osp.exists(results_file) else {}
    for where, _, _, _ in runnable:
        if where in ran:
            results[where] = dict(ran[where])
            if ran[where].get('stop'):
                results[where]['message'] += f'\n\nthe page\'s interpreter: {output}'
                break
        else:  # the interpreter ended while running it
            results[where] = {'status': 'failed', 'message': output, 'stop': 1}
            break
    first = next((b.where for b in python_blocks(page) if results.get(b.where, {}).get(
        'stop') or results.get(b.where, {}).get('status') == 'skipped'), None)
    for block in python_blocks(page):
        if block.where not in results:
            # skipped after a skipped block; a failure's followers fail too, never hidden
            results[block.where] = {
                'status': 'skipped' if results[first]['status'] == 'skipped' else 'failed',
                'message': f'not run: it follows {first}, which {results[first]["status"]}'}
    return results


@pytest.mark.slow  # each page in a fresh interpreter (make test, not test-fast)
@pytest.mark.parametrize('block', [b for p in PAGES for b in python_blocks(p)],
                         ids=lambda b: b.where)
def test_python_examples_run(block, sandbox, stand_ins, tmp_path_factory):
    if block.page not in PAGE_RESULTS:
        folder = str(tmp_path_factory.mktemp('docs_page'))
        PAGE_RESULTS[block.page] = run_python_page(block.page, sandbox, folder, stand_ins)
    result = PAGE_RESULTS[block.page][block.where]
    if result['status'] == 'skipped':
        pytest.skip(result['message'])
    if result['status'] == 'failed':
        pytest.fail(f'{block.where} failed: {result["message"]}', pytrace=False)


def assert_shown_as_tested(block: Block) -> None:
    """Each line of a ``same-as`` block is a line of a block of that page that runs."""
    tested = {line.strip() for other in ALL_BLOCKS[block.same_as]
              if other.language in {'bash', 'sh'} and not other.same_as
              and not missing_need(other) for line in other.code.splitlines()}
    for line in block.code.splitlines():
        assert not line.strip() or line.strip() in tested, (
            f'{block.where}: {line.strip()!r} is not a line of a tested block of '
            f'{block.same_as}; make them the same, or drop the same-as directive')


SHOWN_SHELL = re.compile(r'^(?P<code>.*?(?:^|&&|\|\||;)\s*(?:ls|cat|echo)\b[^#]*?)'
                         r'\s+#\s(?P<output>[^\'"]*)$')


def shell_outputs(block: Block, folder: str) -> Tuple[str, List[Tuple[str, str, str]]]:
    """The block as run, and ``(page line, file, output)`` of each line whose last
    command is ``ls``, ``cat`` or ``echo`` and which ends with a comment: the output
    it shows, which that file receives. ``CMD || echo "exit status $?"  # ... exit
    status 1`` shows a documented exit status, checked so."""
    lines, shown = block.as_run().split('\n'), []
    for i, line in enumerate(lines):
        found = SHOWN_SHELL.match(line)
        if found:
            where, path = f'{block.page}:{block.line + 1 + i}', osp.join(folder, f'line{i}.out')
            lines[i] = f'{{ {found["code"]}; }} > {shlex.quote(path)}; cat {shlex.quote(path)}'
            shown.append((where, path, found['output'].strip()))
        elif 'exit status $?' in line:
            raise AssertionError(f'{block.page}:{block.line + 1 + i}: a shown exit status '
                                 'needs its output comment, e.g. `# ... exit status 1`')
    return '\n'.join(lines), shown


@pytest.mark.slow  # the tools as subprocesses, some of them training
@pytest.mark.parametrize('block', shell_blocks(), ids=lambda b: b.where)
def test_shell_examples_run(block, sandbox, tmp_path):
    if block.same_as:
        assert_shown_as_tested(block)
        return
    reason = missing_need(block)
    if reason:
        pytest.skip(reason)
    for name in block.data:
        make_data(name, sandbox)
    code, shown = shell_outputs(block, str(tmp_path))
    result = subprocess.run(['bash', '-euo', 'pipefail', '-c', code], cwd=sandbox,
                            env=run_env(), capture_output=True, text=True,
                            timeout=BLOCK_TIMEOUT_S)
    if result.returncode != 0:
        fail(block.where, result)
    for where, path, expected in shown:
        got = open(path).read().rstrip('\n') if osp.exists(path) else ''
        got = '\n'.join(line.rstrip() for line in got.split('\n'))
        assert output_matches(expected, got), (
            f'{where}: printed {got!r}; the page shows {expected!r}')


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


def test_shown_outputs_are_compared(tmp_path, monkeypatch):
    """A print's output comment, a shown refusal and a shown exit status are checked:
    a page that shows anything else than what runs fails, naming the line; blocks
    are reported one by one."""
    page = tmp_path / 'page.md'
    page.write_text(
        '```python\nprint(1 + 1)   # 2\nprint([1.25, 2])   # [1.2..., 2]\n'
        'print(7)\n# 7\n```\n'
        '```python\nprint(1 + 1)   # 3\n```\n'
        '```python\ntry:\n    int("4")\nexcept ValueError as err:\n'
        '    print(err)   # invalid literal for int() with base 10: ...\n```\n'
        '<!-- docs-test: needs gpu -->\n```python\nprint(5)   # 5\n```\n'
        '```python\nprint(6)   # 6\n```\n')
    monkeypatch.setattr(sys.modules[__name__], 'ROOT', str(tmp_path))
    blocks = read_blocks('page.md')
    monkeypatch.setitem(ALL_BLOCKS, 'page.md', blocks)
    monkeypatch.setattr(sys.modules[__name__], 'missing_need',
                        lambda b: 'no gpu here' if b.needs else None)
    results = run_python_page('page.md', str(tmp_path), str(tmp_path), None)
    status = {where: r['status'] for where, r in results.items()}
    assert status == {'page.md:1': 'passed', 'page.md:7': 'failed', 'page.md:10': 'failed',
                      'page.md:17': 'skipped', 'page.md:20': 'skipped'}, results
    assert "page.md:8: printed '2'; the page shows '3'" in results['page.md:7']['message']
    # the refusal that was not raised
    assert 'page.md:14: printed nothing' in results['page.md:10']['message']
    assert 'follows page.md:17' in results['page.md:20']['message']
    unshown = Block('page.md', 1, 'python', 'try:\n    pass\nexcept ValueError as err:\n'
                    '    print(err)\n')
    with pytest.raises(AssertionError, match='a refusal prints its message without showing'):
        shown_outputs(unshown)
    assert output_matches('refusing to load x.pth: ...', 'refusing to load x.pth:')
    assert not output_matches('(4, 8, 16, 32)', '(4, 8, 16, 64)')

    for command, shown, ok in [('false', 'exit status 1', True),
                               ('false', 'exit status 2', False),
                               ('true', 'exit status 1', False),
                               ('echo made; false', '... exit status 1', True)]:
        block = Block('page.md', 1, 'bash',
                      f'{{ {command}; }} || echo "exit status $?"   # {shown}\n'
                      'echo done   # done\n')
        code, checks = shell_outputs(block, str(tmp_path))
        subprocess.run(['bash', '-euo', 'pipefail', '-c', code], cwd=tmp_path, check=True,
                       capture_output=True)
        got = [(where, open(path).read().strip()) for where, path, _ in checks]
        assert [w for w, _ in got] == ['page.md:2', 'page.md:3']
        assert output_matches(shown, got[0][1]) is ok, (command, shown, got)
        assert got[1][1] == 'done'
    with pytest.raises(AssertionError, match='needs its output comment'):
        shell_outputs(Block('page.md', 1, 'bash', 'false || echo "exit status $?"\n'),
                      str(tmp_path))
