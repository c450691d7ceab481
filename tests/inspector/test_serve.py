"""``cl.inspect`` serves the page with uvicorn on 127.0.0.1 from a background thread."""
from __future__ import annotations

import socket

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_inspect_serves_the_api_on_localhost(torch_model, digits, tmp_path):
    import httpx

    import crosslens as cl
    x, y = digits
    port = _free_port()
    server = cl.inspect(torch_model, np.ascontiguousarray(x[:30].transpose(0, 3, 1, 2)),
                        store=tmp_path / "s", port=port, labels=y[:30], progress=False)
    try:
        assert server.url == f"http://localhost:{port}/"
        assert "<iframe" in server._repr_html_()
        session = httpx.get(f"http://127.0.0.1:{port}/api/session", timeout=30).json()
        assert session["dataset"]["size"] == 30
        assert httpx.get(f"http://127.0.0.1:{port}/nope", timeout=30).status_code == 404
    finally:
        server.stop()
