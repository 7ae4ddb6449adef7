"""Files served from 127.0.0.1, for the tests of downloads: no test reaches
beyond this machine."""
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Iterator, Optional


class Files(ThreadingHTTPServer):
    """``/name`` -> bytes; ``mode[name]``: 'truncate' (half the body under the
    full Content-Length), 'stall' (headers, then silence), 'slow' (1 s before
    answering). ``requests`` counts GETs per name."""
    daemon_threads = True

    def __init__(self):
        super().__init__(('127.0.0.1', 0), Handler)
        self.files, self.mode, self.requests = {}, {}, {}
        self.release = threading.Event()

    def url(self, name: str) -> str:
        return f'http://127.0.0.1:{self.server_address[1]}/{name}'


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        name = self.path.lstrip('/')
        server = self.server
        server.requests[name] = server.requests.get(name, 0) + 1
        if name not in server.files:
            self.send_error(404)
            return
        body, mode = server.files[name], server.mode.get(name)
        if mode == 'slow':
            time.sleep(1.0)
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if mode == 'stall':
            server.release.wait(30)
            return
        self.wfile.write(body[:len(body) // 2] if mode == 'truncate' else body)

    def log_message(self, *args):
        pass


@contextmanager
def serving(files: Optional[Dict[str, bytes]] = None) -> Iterator[Files]:
    """A :class:`Files` server on a free port, holding ``files``, for the block."""
    server = Files()
    server.files.update(files or {})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
