"""Entry points for non-image inputs: token ids (:func:`explain_text`, and
:func:`explain_similarity` for sentence-embedding models) and feature tables
(:func:`explain_tabular`). Time series need none: ``cl.explain`` attributes over time ×
channel, and :func:`crosslens.viz.series_figure` draws the result. :func:`resolve_modality`
tells which of these a data set holds (the dataset store and the inspection page use it)."""
from .kinds import MODALITIES, Modality, resolve_modality
from .sentence import explain_similarity, similarity_model
from .tabular import TabularExplanation, explain_tabular, feature_group_ids
from .text import TEXT_METHODS, TextExplanation, explain_text

__all__ = ["MODALITIES", "Modality", "TEXT_METHODS", "TabularExplanation", "TextExplanation",
           "explain_similarity", "explain_tabular", "explain_text", "feature_group_ids",
           "resolve_modality", "similarity_model"]
