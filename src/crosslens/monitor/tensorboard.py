"""The TensorBoard sink: event files written with the ``tensorboard`` package's own writer.

Records go through tensorboard's ``RecordWriter`` (the TFRecord framing with its masked
CRC-32C) into a plain file, and summaries are built from tensorboard's bundled protos
(``tensorboard.compat.proto``). Its ``EventFileWriter`` is not used: it opens files with
``tensorboard.compat.tf.io.gfile``, which imports TensorFlow whenever it is installed.
So nothing here imports TensorFlow, and a PyTorch training loop logs without it.
"""
from __future__ import annotations

import itertools
import os
import socket
import time
from pathlib import Path

import numpy as np

from .entry import Entry
from .errors import MissingDependencyError
from .images import enlarged, png_bytes

#: Bins of every logged histogram.
BINS = 30
#: Images are enlarged (nearest neighbour) to at least this many rows, to be readable.
MIN_IMAGE_HEIGHT = 96
_files = itertools.count()  # tells apart the files of several sinks of one process


def _protos():
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.compat.proto import tensor_pb2, tensor_shape_pb2, types_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter
    except ImportError as error:
        raise MissingDependencyError(
            "the TensorBoard sink needs the tensorboard package (pip install "
            "'crosslens[monitor]'); or log to the HTML visual log only with "
            "sinks=[HtmlLog(path)]") from error
    return event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2, RecordWriter


def histogram_proto(values: np.ndarray, summary_pb2, bins: int = BINS):
    """A ``HistogramProto`` of the finite ``values``: exact count, sum, sum of squares,
    minimum and maximum, and ``bins`` equal-width buckets (TensorBoard reads each
    bucket's right edge as its limit); ``None`` when no value is finite."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    counts, edges = np.histogram(values, bins=bins)
    return summary_pb2.HistogramProto(
        min=float(values.min()), max=float(values.max()), num=float(values.size),
        sum=float(values.sum()), sum_squares=float(np.square(values).sum()),
        bucket_limit=[float(e) for e in edges[1:]], bucket=[float(c) for c in counts])


class TensorBoardSink:
    """Writes each entry's scalars, histograms, images and notes to an event file.

    Parameters
    ----------
    log_dir
        Folder of the event file (``tensorboard --logdir`` on it, or on a parent).
    """

    def __init__(self, log_dir: str | Path) -> None:
        (self._event, self._summary, self._tensor, self._shape, self._types,
         writer) = _protos()
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # The file name TensorBoard's readers look for (as EventFileWriter names it).
        name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
                f"{os.getpid()}.{next(_files)}")
        self.path = self.log_dir / name
        self._writer = writer(open(self.path, "wb"))
        self._add(self._event.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def write(self, entry: Entry) -> None:
        """Append one entry (one event) and flush, so a running TensorBoard shows it."""
        s = self._summary
        values = [s.Summary.Value(tag=tag, simple_value=float(v))
                  for tag, v in entry.scalars.items()]
        for tag, v in entry.histograms.items():
            histogram = histogram_proto(v, s)
            if histogram is not None:  # e.g. the drift of constant maps: all nan
                values.append(s.Summary.Value(tag=tag, histo=histogram))
        for tag, image in entry.images.items():
            big = enlarged(image, MIN_IMAGE_HEIGHT)
            values.append(s.Summary.Value(tag=tag, image=s.Summary.Image(
                height=big.shape[0], width=big.shape[1], colorspace=3,
                encoded_image_string=png_bytes(big))))
        if entry.notes:
            values.append(self._text(f"notes/{entry.kind}", "\n\n".join(entry.notes)))
        self._add(self._event.Event(wall_time=time.time(), step=int(entry.step),
                                    summary=s.Summary(value=values)))

    def _add(self, event) -> None:
        self._writer.write(event.SerializeToString())
        self._writer.flush()

    def _text(self, tag: str, text: str):
        """A text summary, as TensorBoard's text plugin stores one (a string tensor)."""
        tensor = self._tensor.TensorProto(
            dtype=self._types.DT_STRING, string_val=[text.encode("utf-8")],
            tensor_shape=self._shape.TensorShapeProto(dim=[]))
        metadata = self._summary.SummaryMetadata(
            plugin_data=self._summary.SummaryMetadata.PluginData(plugin_name="text"))
        return self._summary.Summary.Value(tag=tag, metadata=metadata, tensor=tensor)

    def close(self) -> None:
        """Close the event file (every entry is already flushed)."""
        if not self._writer.closed:
            self._writer.close()
