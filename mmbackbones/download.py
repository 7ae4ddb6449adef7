"""Fetching a public weights file into a cache, once per machine.

The cache follows torch hub's convention (``$TORCH_HOME/hub/checkpoints``, i.e.
``~/.cache/torch/hub/checkpoints``); ``MMBACKBONES_WEIGHTS_DIR`` overrides it.
A download is written to ``<name>.<pid>.part`` and renamed when complete and
verified, so no partial file is ever visible under the final name. A file lock
beside it makes one process download while the others (every rank of a
distributed run on this machine, or two jobs) wait and then use its file.

Names: a torchvision or OpenMMLab file, whose name ends in its own hash, keeps
that name (as torch hub and MMEngine cache it, so their files are shared); any
other URL is cached as ``<digest of the whole URL>-<its last part>``, so two
addresses never share a file.

Integrity on every use: ``<name>.json`` beside each file records its URL and
SHA-256 (the published one where the source publishes it, else the one seen at
the first download or first use). A file that no longer matches is an error
naming both hashes. The hash is recomputed only when the file's size or
modification time differ from the record's, so an unchanged file costs a stat.

Offline (``MMBACKBONES_OFFLINE=1``, ``HF_HUB_OFFLINE=1``, or no network) the
error names the address and the path where a file put there by hand is used.
"""
import hashlib
import http.client
import json
import os
import os.path as osp
import re
import socket
import sys
import time
import urllib.error
import urllib.request
import warnings
from typing import Optional
from urllib.parse import urlsplit

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
#: the hosts whose convention that is; elsewhere ``model-20231201.pth`` is a date
HASH_IN_NAME_HOSTS = ('download.pytorch.org', 'download.openmmlab.com')
#: beside each cached file: its URL and SHA-256, and the size and mtime it was verified at
RECORD_SUFFIX = '.json'


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
    """The hex digits a name ends in (``resnet50-0676ba61.pth``): a SHA-256 prefix
    only where the source's convention says so (:func:`published_hash`)."""
    match = HASH_IN_NAME.search(filename)
    return match.group(1) if match else None


def published_hash(url: str) -> Optional[str]:
    """The SHA-256 prefix ``url``'s file name publishes: on torchvision's and
    OpenMMLab's download hosts only, whose names end in one by convention."""
    parts = urlsplit(url)
    if parts.scheme not in ('http', 'https') or parts.hostname not in HASH_IN_NAME_HOSTS:
        return None
    return expected_hash_prefix(osp.basename(parts.path))


def readable_name(url: str) -> str:
    """The URL's last part, with the repository in front for Hugging Face Hub
    addresses (``<org>/<repo>/resolve/<revision>/<file>``), where every timm file
    is ``model.safetensors``. Not unique: :func:`cache_name` is."""
    path = urlsplit(url).path
    hub = re.search(r'/([^/]+)/([^/]+)/resolve/[^/]+/(.+)$', path)
    name = '--'.join(hub.groups()).replace('/', '--') if hub else osp.basename(path)
    # the end keeps the extension, which says how the file is read (.safetensors)
    return re.sub(r'[^\w.\-]', '_', name)[-100:] or 'download'


def cache_name(url: str) -> str:
    """``url``'s file name in the cache: a torchvision/OpenMMLab name that ends in
    its hash as it is (torch hub's and MMEngine's name for it); any other URL as
    ``<first 16 hex digits of the SHA-256 of the whole URL, query included>-<its
    readable name>``, since ``exp_a/epoch_12.pth`` and ``exp_b/epoch_12.pth``, or
    ``uc?id=A`` and ``uc?id=B``, are different files."""
    if published_hash(url):
        return osp.basename(urlsplit(url).path)
    return f'{hashlib.sha256(url.encode()).hexdigest()[:16]}-{readable_name(url)}'


def cache_path(url: str, filename: Optional[str] = None) -> str:
    """Where :func:`fetch` keeps ``url``'s file (and where one put by hand is used)."""
    return osp.join(cache_dir(), filename or cache_name(url))


def fetch(url: str, filename: Optional[str] = None, sha256: Optional[str] = None,
          progress: bool = True, timeout: Optional[float] = None) -> str:
    """The local path of ``url``'s file, downloading it into :func:`cache_dir`
    unless it is there. ``filename`` names it in the cache (default:
    :func:`cache_name`). ``sha256`` (a prefix is enough), else the hash a
    torchvision/OpenMMLab file name carries, is checked; with neither, the hash
    of the first download (or first use of a file put there by hand) is recorded.
    Every use checks the file against that hash (:func:`verify_cached`). A
    download that fails the check is removed and is an error."""
    path = cache_path(url, filename)
    expected = (sha256 or published_hash(url) or '').lower() or None
    if osp.isfile(path):
        verify_cached(url, path, expected)
        return path
    if offline():
        raise DownloadError(_offline_message(url, path, 'offline mode is on ('
                                             + ' or '.join(OFFLINE_ENVS) + ')'))
    folder = osp.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        lock = FileLock(path + '.lock')
        lock.acquire()
    except OSError as err:
        raise DownloadError(_unwritable_message(url, folder, err)) from None
    try:
        if osp.isfile(path):  # another process downloaded it while we waited
            verify_cached(url, path, expected)
            return path
        part = f'{path}.{os.getpid()}.part'
        try:
            digest = _download(url, part, path, progress, timeout)
            _verify(url, digest, expected)
            # the record first: a process that sees the file (it takes no lock
            # then) must find it recorded, not take it for one put there by hand.
            # A rename keeps size and mtime, so the record fits the final file.
            _write_record(path, _record(url, part, digest,
                                        'published' if expected else 'first download'))
            os.replace(part, path)
        finally:
            if osp.exists(part):
                os.remove(part)
    finally:
        lock.release()
    return path


def verify_cached(url: str, path: str, expected: Optional[str] = None) -> None:
    """A cached file must be the one its source publishes (``expected``, a SHA-256
    or a prefix) or, where it publishes none, the one recorded at its first
    download or first use; else a :class:`DownloadError` naming both hashes. The
    file is hashed again only when its size or mtime differ from the record's
    (as make and rsync decide), so an unchanged multi-GB file costs a stat."""
    record = _read_record(path)
    stat = os.stat(path)
    unchanged = record is not None and (record.get('size'), record.get('mtime_ns')) == (
        stat.st_size, stat.st_mtime_ns)
    digest = record['sha256'] if unchanged else file_sha256(path)
    if expected and not digest.startswith(expected):
        raise DownloadError(
            f'{path}, the cached file of {url}, is not the published file: its SHA-256 is '
            f'{digest}, the published hash is {expected}. Delete it to download the file '
            f'again, or put the published file there')
    if unchanged:
        return
    if record is not None and record['sha256'] != digest:
        raise DownloadError(
            f'{path}, the cached file of {url}, changed since its {record["origin"]}: its '
            f'SHA-256 is {digest}, the recorded one {record["sha256"]} '
            f'({path + RECORD_SUFFIX}). Delete the file to download it again; if the new '
            f'file is the right one, delete the record to accept it')
    origin = record['origin'] if record else ('published' if expected else 'first use')
    if not _write_record(path, _record(url, path, digest, origin)):
        return
    if record is None and not expected:
        warnings.warn(
            f'{path} ({url}) is in the weights cache with no record of its download (put '
            f'there by hand, or by another tool), and its source publishes no hash: its '
            f'SHA-256 {digest} is now recorded in {path + RECORD_SUFFIX}, and every later '
            f'use is checked against it. Compare it with the source\'s if you can.',
            UserWarning, stacklevel=3)


def file_sha256(path: str) -> str:
    """The SHA-256 hex digest of a file, read in 1 MB chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _record(url: str, path: str, digest: str, origin: str) -> dict:
    stat = os.stat(path)
    return dict(url=url, sha256=digest, origin=origin, size=stat.st_size,
                mtime_ns=stat.st_mtime_ns)


def _read_record(path: str) -> Optional[dict]:
    try:
        with open(path + RECORD_SUFFIX) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get('sha256'), str):
        return None  # not ours, or damaged: the file is hashed and recorded again
    record.setdefault('origin', 'first use')
    return record


#: records that could not be written, warned about once per process
_unrecorded: set = set()


def _write_record(path: str, record: dict) -> bool:
    """Write ``path``'s record atomically; False where the cache is read-only (a
    shared folder): the file is then hashed on every use, which is still checked."""
    target = path + RECORD_SUFFIX
    temporary = f'{target}.{os.getpid()}.tmp'
    try:
        with open(temporary, 'w') as f:
            json.dump(record, f, indent=1)
        os.replace(temporary, target)
        return True
    except OSError as err:
        if osp.exists(temporary):
            os.remove(temporary)
        if target not in _unrecorded:
            _unrecorded.add(target)
            warnings.warn(f'cannot record the SHA-256 of {path} in {target} ({err}): the '
                          f'file is hashed again on every use', UserWarning, stacklevel=4)
        return False


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


def _unwritable_message(url: str, folder: str, err: OSError) -> str:
    return (f'cannot download {url} into the weights cache {folder}: it cannot be written '
            f'({err.strerror or err}). Set {CACHE_ENV} to a folder you can write (or to '
            f'one that already holds the file)')


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
        if osp.isfile(path + RECORD_SUFFIX):
            os.remove(path + RECORD_SUFFIX)
