"""The inspection page (issue 18): explore a model over a data set in the browser.

:func:`inspect` starts the local server (``cl.inspect``, ``crosslens inspect``);
:class:`Inspector` is the data layer (the dataset store and every view as JSON);
:func:`create_app` the Starlette app; :func:`export_html` the self-contained static page.
The JSON API is described in notes/inspect_api.md and served at ``/openapi.json``.
"""
from __future__ import annotations

from .app import create_app
from .export import export_html
from .serve import InspectServer, inspect
from .session import Inspector

__all__ = ["inspect", "Inspector", "create_app", "export_html", "InspectServer"]
