"""Attributions of models of feature tables ``(N, F)``: :func:`explain_tabular`.

Any method of :func:`crosslens.explain` runs on a table; this entry point adds feature
names and feature groups:

- ``feature_groups`` (``{"group": [names or indices], ...}`` or one group label per
  feature) becomes the ``feature_mask`` of the methods that take one (KernelSHAP, LIME,
  Shapley value sampling, feature ablation, feature permutation): a group is one player /
  one interpretable feature, removed as a whole. Features in no group are their own group.
- Gradient methods attribute per feature; a group's value is the sum of its features'.

The result's ``values`` are ``(N, F)`` per feature, ``group_values`` ``(N, G)`` per group,
with bar charts and a beeswarm summary in SHAP's conventions (:mod:`crosslens.viz.tabular`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..api import _model, explain
from ..core.arrays import to_numpy
from ..core.errors import InputError, OptionError
from ..core.explanation import Explanation
from ..core.registry import get_method
from .result import extended

#: Methods whose features come from ``feature_mask`` (a group is one feature).
MASK_METHODS = ("kernel_shap", "lime", "shapley_value_sampling", "feature_ablation",
                "feature_permutation")


@dataclass(repr=False)
class TabularExplanation(Explanation):
    """An :class:`~crosslens.Explanation` of a feature table, with names and groups.

    Attributes
    ----------
    feature_names
        One name per feature.
    group_names
        One name per group (the feature names when there are no groups).
    group_values
        ``(N, G)`` numpy: each group's attribution.
    """

    feature_names: list[str] | None = None
    group_names: list[str] | None = None
    group_values: np.ndarray | None = None

    @property
    def values(self) -> np.ndarray:
        """``(N, F)`` numpy attributions per feature."""
        return np.asarray(self.numpy(), dtype=np.float64)

    def bar(self, i: int = 0, groups: bool = False, max_features: int = 12, **options: Any
            ) -> Any:
        """Sample ``i``'s attributions as sorted horizontal bars
        (:func:`crosslens.viz.feature_bars`), per group with ``groups=True``."""
        from ..viz.tabular import feature_bars
        values = self.group_values[i] if groups else self.values[i]
        names = self.group_names if groups else self.feature_names
        data = None if groups else to_numpy(self.inputs)[i]
        return feature_bars(values, names, data=data, max_features=max_features,
                            title=f"{self.method} — target {self._target(i)}", **options)

    def summary(self, max_features: int = 12, **options: Any) -> Any:
        """The batch's beeswarm summary (:func:`crosslens.viz.summary_plot`)."""
        from ..viz.tabular import summary_plot
        return summary_plot(self.values, to_numpy(self.inputs), self.feature_names,
                            max_features=max_features, **options)

    def figure(self, **options: Any) -> Any:
        """One sample's bar chart (``i=``), or the summary of the batch (``summary=True``)."""
        if options.pop("summary", False):
            return self.summary(**options)
        return self.bar(**options)

    def _target(self, i: int) -> Any:
        return self.target[i] if isinstance(self.target, list) else self.target

    def __repr__(self) -> str:
        return (f"TabularExplanation(method={self.method!r}, target={self.target!r}, "
                f"values {self.values.shape}, groups {len(self.group_names)})")


def explain_tabular(model: Any, x: Any, method: str = "kernel_shap", *,
                    feature_names: Sequence[str] | None = None,
                    feature_groups: Any = None, **options: Any) -> TabularExplanation:
    """Explain a model of a feature table, with feature names and groups.

    Parameters
    ----------
    model
        A PyTorch or Keras model of ``(N, F)`` floating-point features (or a path).
    x
        The table ``(N, F)``.
    method
        Any method of :func:`crosslens.explain` that runs on ``(N, F)`` inputs.
    feature_names
        One name per feature (default ``"x0"``, ``"x1"``, ...).
    feature_groups
        ``{"group": [feature names or indices]}`` or one group label per feature; see
        the module docstring.
    **options
        :func:`crosslens.explain`'s settings and the method's options (``target``,
        ``baseline`` — e.g. the training mean —, ``samples``, ``seed``, ...).

    Returns
    -------
    TabularExplanation
    """
    model = _model(model)
    table = to_numpy(x)
    if table.ndim != 2:
        raise InputError(f"explain_tabular takes a table (N, F); got shape {table.shape}. "
                         "For images, sequences or token ids use cl.explain / explain_text")
    count = table.shape[1]
    names = [f"x{i}" for i in range(count)] if feature_names is None else \
        [str(n) for n in feature_names]
    if len(names) != count:
        raise InputError(f"{len(names)} feature names for {count} features")
    group_of, group_names = feature_group_ids(names, feature_groups)
    name = get_method(method).name
    if name in MASK_METHODS:
        if "feature_mask" in options and feature_groups is not None:
            raise OptionError("give feature_groups= or feature_mask=, not both")
        options.setdefault("feature_mask", group_of[None])
    elif feature_groups is not None and name == "occlusion":
        raise OptionError("occlusion slides windows over neighbouring features; to remove "
                          "feature groups use feature_ablation (or kernel_shap / lime)")
    exp = explain(model, x, method, **options)
    values = np.asarray(exp.numpy(), dtype=np.float64)
    if values.shape != table.shape:
        raise OptionError(f"{name} returned values of shape {values.shape}, not one per "
                          "feature; explain_tabular takes input-space methods (no layer=)")
    grouped = np.zeros((len(values), len(group_names)))
    if name in MASK_METHODS and feature_groups is not None:
        first = [int(np.flatnonzero(group_of == g)[0]) for g in range(len(group_names))]
        grouped[:] = values[:, first]  # every member holds its group's value
    else:
        np.add.at(grouped.T, group_of, values.T)
    return extended(TabularExplanation, exp, feature_names=names, group_names=group_names,
                    group_values=grouped)


def feature_group_ids(names: Sequence[str], groups: Any) -> tuple[np.ndarray, list[str]]:
    """Group index of each feature and the group names (see :func:`explain_tabular`).

    Parameters
    ----------
    names
        The feature names.
    groups
        ``None`` (each feature its own group), ``{"group": [names or indices]}``, or one
        group label per feature.
    """
    count = len(names)
    if groups is None:
        return np.arange(count), list(names)
    if isinstance(groups, Mapping):
        labels: list[Any] = [None] * count
        for group, members in groups.items():
            for member in members:
                index = _feature_index(member, names)
                if labels[index] is not None:
                    raise OptionError(f"feature {names[index]!r} is in groups "
                                      f"{labels[index]!r} and {group!r}; a feature belongs "
                                      "to one group")
                labels[index] = group
        labels = [names[i] if label is None else label for i, label in enumerate(labels)]
    else:
        labels = list(groups)
        if len(labels) != count:
            raise OptionError(f"feature_groups gives {len(labels)} labels for {count} "
                              "features; give one per feature or a dict of groups")
    order = list(dict.fromkeys(labels))
    return np.array([order.index(label) for label in labels]), [str(g) for g in order]


def _feature_index(member: Any, names: Sequence[str]) -> int:
    if isinstance(member, (int, np.integer)) and not isinstance(member, bool):
        if not 0 <= int(member) < len(names):
            raise OptionError(f"feature index {member} is out of range (0..{len(names) - 1})")
        return int(member)
    if member not in names:
        from ..core.names import unknown_name_message
        raise OptionError(unknown_name_message("feature", str(member), list(names)))
    return list(names).index(member)
