"""The visual log: one self-contained HTML file that grows an entry per logging step and
per logged pipeline stage.

Images are embedded as ``data:`` URLs and the page has no script, stylesheet or font
from elsewhere, so it opens offline and from an archive. The file is rewritten whole at
each entry through a temporary file and ``os.replace``: a reader (a browser reloading
it, a sync tool) sees the previous or the new log, never half of one.
"""
from __future__ import annotations

import html
import os
import tempfile
from pathlib import Path

import numpy as np

from ..viz import png_data_uri
from .entry import Entry
from .images import png_bytes

STYLE = ("body{font:14px sans-serif;margin:1.5em;color:#222}"
         "section{border-top:1px solid #ccc;padding:.5em 0}"
         "figure{display:inline-block;margin:.3em .8em .3em 0;vertical-align:top}"
         "figure img{image-rendering:pixelated;height:96px}"
         "figcaption{font-size:12px;max-width:40em}"
         "table{border-collapse:collapse;font-size:12px;margin:.3em 0}"
         "td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}"
         ".note{color:#a40}")


class HtmlLog:
    """Collects entries and rewrites one HTML file after each.

    Parameters
    ----------
    path
        The ``.html`` file to write (its folder is created).
    title
        Heading of the page.
    """

    def __init__(self, path: str | Path, title: str = "crosslens training log") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.title = title
        self._sections: list[str] = []

    def write(self, entry: Entry) -> None:
        """Add an entry and rewrite the file atomically."""
        self._sections.append(section(entry, len(self._sections)))
        self._save()

    def close(self) -> None:
        """Nothing is held open: the file is complete after every entry."""

    def html(self) -> str:
        """The whole page."""
        head = (f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
                f"<title>{html.escape(self.title)}</title><style>{STYLE}</style></head><body>"
                f"<h1>{html.escape(self.title)}</h1>")
        return head + "".join(self._sections) + "</body></html>"

    def _save(self) -> None:
        descriptor, temporary = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(self.html())
            os.chmod(temporary, 0o644)  # mkstemp makes it private; a log is for reading
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def section(entry: Entry, index: int) -> str:
    """One entry as an HTML ``<section>`` (numbered ``index`` in the page)."""
    e = html.escape
    parts = [f"<section class='entry' id='entry-{index}' data-kind='{e(entry.kind)}' "
             f"data-step='{entry.step}'><h2>{e(entry.title)}</h2>"]
    parts += [f"<p class='note'>{e(note)}</p>" for note in entry.notes]
    for tag, image in entry.images.items():
        caption = entry.captions.get(tag, "")
        parts.append(f"<figure><img src='{png_data_uri(png_bytes(image))}' alt='{e(tag)}'>"
                     f"<figcaption><b>{e(tag)}</b> {e(caption)}</figcaption></figure>")
    if entry.scalars:
        rows = "".join(f"<tr><td>{e(tag)}</td><td>{value:.4g}</td></tr>"
                       for tag, value in entry.scalars.items())
        parts.append(f"<table><tr><th>scalar</th><th>value</th></tr>{rows}</table>")
    if entry.histograms:
        rows = "".join(_histogram_row(tag, values) for tag, values in entry.histograms.items())
        parts.append("<table><tr><th>distribution</th><th>n</th><th>min</th><th>mean</th>"
                     f"<th>max</th></tr>{rows}</table>")
    if entry.seconds:
        parts.append(f"<p>{entry.seconds:.2f} s</p>")
    return "".join(parts) + "</section>"


def _histogram_row(tag: str, values: np.ndarray) -> str:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return f"<tr><td>{html.escape(tag)}</td><td>0</td><td></td><td></td><td></td></tr>"
    return (f"<tr><td>{html.escape(tag)}</td><td>{v.size}</td><td>{v.min():.4g}</td>"
            f"<td>{v.mean():.4g}</td><td>{v.max():.4g}</td></tr>")
