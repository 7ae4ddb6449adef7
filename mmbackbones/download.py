"""Fetching a public weights file into a cache, once per machine.

The cache follows torch hub's convention (``$TORCH_HOME/hub/checkpoints``, i.e.
``~/.cache/torch/hub/checkpoints``); ``MMBACKBONES_WEIGHTS_DIR`` overrides it.
A download is written to ``<name>.<pid>.part`` and renamed when complete and
verified, so no partial file is ever visible under the final name. A file lock
beside it makes one process download while the others (every rank of a
distributed run on this machine, or two jobs) wait and then use its file.

Offline (``MMBACKBONES_OFFLINE=1``, ``HF_HUB_OFFLINE=1``, or no network) the
error names the address and the path where a file put there by hand is used.
"""
import hashlib
import http.client
import os
import os.path as osp
import re
import socket
import sys
import time
import urllib.error
import urllib.request
from typing import Optional

from filelock import FileLock

from .errors import DownloadError

CACHE_ENV = 'MMBACKBONES_WEIGHTS_DIR'
OFFLINE_ENVS = ('MMBACKBONES_OFFLINE', 'HF_HUB_OFFLINE')
TIMEOUT_ENV = 'MMBACKBONES_DOWNLOAD_TIMEOUT'
#: seconds without a byte before a download is abandoned
DEFAULT_TIMEOUT = 60.0
#: torchvision's and OpenMMLab's file names end in the first hex digits of the
#: file's SHA-256, as torch hub's ``check_hash`` expects
HASH_IN_NAME = re.compile(r'-([a-f0-9]{6,64})\.[a-z]+$')


def cache_dir() -> str:
    """Where downloaded weights live (created on first use)."""
    if os.environ.get(CACHE_ENV):
        return osp.expanduser(os.environ[CACHE_ENV])
    import torch.hub
    return osp.join(torch.hub.get_dir(), 'checkpoints')


def offline() -> bool:
    return any(os.environ.get(name, '0').lower() in ('1', 'true', 'yes', 'on')
               for name in OFFLINE_ENVS)


def expected_hash_prefix(filename: str) -> Optional[str]:
    """The SHA-256 prefix a file's name publishes (``resnet50-0676ba61.pth``)."""
    match = HASH_IN_NAME.search(filename)
    return match.group(1) if match else None


def cache_name(url: str) -> str:
    """A file's name in the cache: the URL's last part, with the repository in
    front for Hugging Face Hub addresses (``<org>/<repo>/resolve/<revision>/<file>``),
    where every timm file is ``model.safetensors``."""
    path = url.split('?', 1)[0]
    hub = re.search(r'/([^/]+)/([^/]+)/resolve/[^/]+/(.+)$', path)
    if hub:
        return '--'.join(hub.groups()).replace('/', '--')
    return osp.basename(path)


def fetch(url: str, filename: Optional[str] = None, sha256: Optional[str] = None,
          progress: bool = True, timeout: Optional[float] = None) -> str:
    """The local path of ``url``'s file, downloading it into :func:`cache_dir`
    unless it is there. ``filename`` names it in the cache (default: the URL's
    last part); ``sha256`` (a prefix is enough) is checked, else the hash a
    torchvision/OpenMMLab file name carries. A file that fails the check is
    removed and is an error."""
    filename = filename or cache_name(url)
    path = osp.join(cache_dir(), filename)
    if osp.isfile(path):
        return path
    if offline():
        raise DownloadError(_offline_message(url, path, 'offline mode is on ('
                                             + ' or '.join(OFFLINE_ENVS) + ')'))
    os.makedirs(osp.dirname(path), exist_ok=True)
    with FileLock(path + '.lock'):
        if osp.isfile(path):  # another process downloaded it while we waited
            return path
        part = f'{path}.{os.getpid()}.part'
        try:
            digest = _download(url, part, path, progress, timeout)
            _verify(url, digest, sha256 or expected_hash_prefix(filename))
            os.replace(part, path)
        finally:
            if osp.exists(part):
                os.remove(part)
    return path


def _download(url: str, part: str, path: str, progress: bool,
              timeout: Optional[float]) -> str:
    """Write ``url`` to ``part`` (on its way to ``path``); return its SHA-256 hex digest."""
    timeout = timeout or float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))
    request = urllib.request.Request(url, headers={'User-Agent': 'mmbackbones'})
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, \
                open(part, 'wb') as out:
            total = int(response.headers.get('Content-Length') or 0)
            done, shown = 0, 0.0
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress and time.monotonic() - shown > 0.5:
                    shown = time.monotonic()
                    _show(url, done, total)
            if progress:
                _show(url, done, total, end='\n')
    except http.client.IncompleteRead as err:
        raise DownloadError(f'downloading {url} ended early (truncated, {err}); nothing was '
                            f'kept, try again') from None
    except urllib.error.HTTPError as err:
        raise DownloadError(f'downloading {url} failed: HTTP {err.code} {err.reason}') from None
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as err:
        reason = getattr(err, 'reason', err)
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise DownloadError(f'downloading {url} stalled: no data for {timeout:g} s '
                                f'({TIMEOUT_ENV} sets the limit)') from None
        raise DownloadError(_offline_message(url, path, f'no connection ({reason})')) from None
    if total and done != total:
        raise DownloadError(f'downloading {url} ended after {done} of {total} bytes '
                            f'(truncated); nothing was kept, try again')
    return digest.hexdigest()


def _verify(url: str, digest: str, expected: Optional[str]) -> None:
    if expected and not digest.startswith(expected):
        raise DownloadError(f'{url} is corrupt: its SHA-256 starts {digest[:len(expected)]}, '
                            f'the published hash is {expected}; the file was removed')


def _offline_message(url: str, path: str, why: str) -> str:
    return (f'cannot download {url}: {why}. Put the file at {path} (it is then used '
            f'without network), or set {CACHE_ENV} to a folder that holds it')


def _show(url: str, done: int, total: int, end: str = '\r') -> None:
    size = f'{done / 2**20:.1f}' + (f'/{total / 2**20:.1f}' if total else '')
    sys.stderr.write(f'downloading {osp.basename(url)}: {size} MB{end}')
    sys.stderr.flush()


def remove_cached(path: str) -> None:
    """Drop a cached file that turned out unreadable, so the next use downloads
    it again instead of failing on it forever."""
    if path.startswith(cache_dir()) and osp.isfile(path):
        os.remove(path)
