import http.server
import socket
import threading

import pytest


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves `server.files[path]`: `(status, body, announced_length)`; a body shorter than the announced length
    is a transfer cut short (the connection closes after it)."""

    def do_GET(self):
        self.server.requests.append(self.path)
        status, body, announced = self.server.files.get(self.path, (404, b"not found", None))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body) if announced is None else announced))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture
def http_server():
    """A threaded HTTP server on 127.0.0.1: set `server.files`, get URLs with `server.url(path)`."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.files = {}
    server.requests = []
    server.url = lambda path: f"http://127.0.0.1:{server.server_address[1]}{path}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def no_network(monkeypatch):
    """Simulate a machine without network: name resolution and connections fail, as they do offline."""

    def refuse(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (network disabled in tests)")

    def refuse_connect(self, *args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse_connect)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty, not yet existing cache folder (`$XDG_CACHE_HOME/gendex`); `GENDEX_DATA_DIR` unset."""
    root = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(root))
    monkeypatch.delenv("GENDEX_DATA_DIR", raising=False)
    return root / "gendex"
