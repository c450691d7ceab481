"""Watch explanations while a model trains (tf-explain's idea, on every framework).

:class:`Monitor` explains a fixed probe set at every logging step and writes attribution
overlays, drift, class similarity, activation statistics and optional feature
visualizations to sinks: :class:`TensorBoardSink` (event files through the
``tensorboard`` package, no TensorFlow needed) and :class:`HtmlLog` (one self-contained
HTML file). ``monitor.step(model, epoch)`` serves a hand-written loop;
:mod:`crosslens.callbacks` has the Keras and Lightning callbacks.
"""
from __future__ import annotations

from .core import Monitor
from .entry import Entry
from .errors import MissingDependencyError
from .html_log import HtmlLog
from .tensorboard import TensorBoardSink

__all__ = ["Monitor", "Entry", "HtmlLog", "TensorBoardSink", "MissingDependencyError"]
