"""HTTP servers the tests start on a loopback address, quiet when a client hangs up."""

from __future__ import annotations

import http.server
import socketserver
import ssl
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class LoopbackServer(http.server.ThreadingHTTPServer):
    """A threaded HTTP server whose request threads do not keep the process alive, and which
    does not print a traceback when a client resets or drops its connection (the downloaders
    under test close kept-alive connections and abandon transfers on purpose)."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            return
        super().handle_error(request, client_address)


@contextmanager
def serving(
    handler: Callable[..., socketserver.BaseRequestHandler],
    host: str = "127.0.0.1",
    *,
    tls: ssl.SSLContext | None = None,
) -> Iterator[str]:
    """``handler`` served on ``host`` (a port chosen by the OS, TLS where ``tls`` is given)
    while the block runs; yields the base URL, ``http://host:port`` (``https://`` with TLS)."""
    server = LoopbackServer((host, 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name="loopback-http", daemon=True).start()
    scheme = "https" if tls is not None else "http"
    try:
        yield f"{scheme}://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
