"""``cl.inspect``: start the inspection page's server (uvicorn) for a model and a data
set, in a background thread from Python (the notebook shows the page inline) or in the
foreground from the CLI."""
from __future__ import annotations

import sys
import threading
import time
import webbrowser
from typing import Any


class InspectServer:
    """A running inspection server: ``url``, ``inspector``, ``stop()``; in Jupyter it
    displays as the page in an iframe."""

    def __init__(self, inspector: Any, server: Any, thread: threading.Thread | None,
                 url: str) -> None:
        self.inspector, self._server, self._thread, self.url = inspector, server, thread, url

    def stop(self) -> None:
        """Stop the server (and the job worker)."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.inspector.jobs.stop()

    def __repr__(self) -> str:
        return f"crosslens inspection page at {self.url}"

    def _repr_html_(self) -> str:
        return (f"<iframe src='{self.url}' width='100%' height='820' "
                "style='border:1px solid #ccc'></iframe>"
                f"<p><a href='{self.url}' target='_blank'>{self.url}</a></p>")


def inspect(model: Any, data: Any = None, store: Any = None, port: int = 8765,
            host: str = "127.0.0.1", open_browser: bool = False, *, block: bool = False,
            **options: Any) -> InspectServer:
    """Open the inspection page for ``model`` over ``data``.

    Parameters
    ----------
    model
        A PyTorch or Keras model, or a path (``.keras``, TorchScript ``.pt``, ``.onnx``)
        or ``module:callable``; or an :class:`~crosslens.inspector.Inspector` already
        made (then ``data``, ``store`` and ``options`` are not given).
    data
        The data set (anything :func:`crosslens.explain_dataset` reads), in the model's
        layout.
    store
        The dataset store's directory (computed with a progress bar when missing).
    port, host
        Where to listen; ``127.0.0.1`` (this machine only) unless told otherwise.
    open_browser
        Open the page in the default browser.
    block
        Serve in this thread until interrupted (the CLI); otherwise a background thread
        serves and this returns at once.
    **options
        :class:`~crosslens.inspector.session.Inspector` options (``layers``, ``labels``,
        ``preprocess``, ``class_names``, ``frames``, ``seed``, ...), and what the data
        are: ``modality`` (``"image"``, ``"text"``, ``"tabular"``, ``"series"``; default
        detected), ``tokens`` (text: a tokenizer or vocabulary), ``feature_names``
        (tabular), ``channel_names`` and ``series_layout`` (series).

    Returns
    -------
    InspectServer
        ``url``, ``inspector``, ``stop()``; displays inline in Jupyter.
    """
    import uvicorn

    from .app import create_app
    from ..core.errors import InputError
    from .errors import ServerError
    from .session import Inspector

    if isinstance(model, Inspector):
        if data is not None or store is not None or options:
            raise InputError("inspect(inspector) takes no data, store or options: the "
                             "Inspector has them")
        inspector = model
    elif data is None:
        raise InputError("inspect(model, data): give the data set to inspect the model on")
    else:
        inspector = Inspector(model, data, store, **options)
    app = create_app(inspector)
    config = uvicorn.Config(app, host=host, port=int(port), log_level="warning")
    server = uvicorn.Server(config)
    url = f"http://{'localhost' if host in ('127.0.0.1', '::1') else host}:{port}/"
    print(f"crosslens inspect: {url} (store {inspector.store.path})", file=sys.stderr)
    if open_browser:
        threading.Timer(1.0, webbrowser.open, (url,)).start()
    if block:
        server.run()
        return InspectServer(inspector, server, None, url)
    thread = threading.Thread(target=server.run, name="crosslens-inspect-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        raise ServerError(f"the inspection server did not start on {host}:{port} (is the "
                           "port in use? pass port=...)")
    return InspectServer(inspector, server, thread, url)
