"""Explaining whole data sets: sources, the resumable store, and the engines.

``cl.explain_dataset(model, data, methods, layers, out=...)`` writes a store
(:mod:`crosslens.dataset.store`); ``cl.open_store(path)`` reads it back.
"""
from .engine import explain_dataset
from .store import Store, StoreError, open_store

__all__ = ["explain_dataset", "open_store", "Store", "StoreError"]
