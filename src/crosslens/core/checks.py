"""Checks and messages shared by the backends: clear errors instead of silent wrong answers
(framework-free: shapes, names and numbers only)."""
from __future__ import annotations

from .errors import (InputError, LayerNotFoundError, ModelError, TargetError,
                     UnsupportedError)
from .targets import ChannelTarget

_LAYOUT_AXES = {"channels_first": "(batch, channels, height, width)",
                "channels_last": "(batch, height, width, channels)"}


def check_finite(all_finite: bool, shape: tuple) -> None:
    """Reject inputs containing NaN or infinity."""
    if not all_finite:
        raise InputError(f"the input of shape {shape} contains NaN or infinite values; "
                         "attributions would be meaningless. Clean the input first")


def check_image_input(shape: tuple, rank: int, channels: int | None, layout: str,
                      framework: str) -> None:
    """Check rank and channel axis of a batch against what the model's first layer takes.

    ``layout`` is ``"channels_first"``, ``"channels_last"`` or ``"features"`` (a dense
    first layer: only the last axis is checked).
    """
    shape = tuple(int(s) for s in shape)
    if layout == "features":
        if len(shape) < 2:
            raise InputError(f"expected a batch of feature vectors (batch, {channels}); got "
                             f"shape {shape}. Add a batch axis, e.g. x[None]")
        if channels is not None and shape[-1] != channels:
            raise InputError(f"the model's first layer takes {channels} features; the input's "
                             f"last axis has {shape[-1]} (shape {shape})")
        return
    expected = _LAYOUT_AXES.get(layout, f"rank {rank}") if rank == 4 else f"rank {rank}"
    if len(shape) == rank - 1 and channels is not None and (
            shape[0] == channels if layout == "channels_first" else shape[-1] == channels):
        raise InputError(f"expected a batch {expected}; got one sample of shape {shape}. "
                         "Add a batch axis, e.g. x[None]")
    if len(shape) != rank:
        raise InputError(f"this {framework} model expects inputs of rank {rank} {expected}; "
                         f"got rank {len(shape)} with shape {shape}")
    if channels is None:
        return
    channel_axis = 1 if layout == "channels_first" else -1
    if shape[channel_axis] == channels:
        return
    other_axis = -1 if layout == "channels_first" else 1
    if rank == 4 and shape[other_axis] == channels:
        if layout == "channels_first":
            fix = "x.permute(0, 3, 1, 2) (torch) or np.transpose(x, (0, 3, 1, 2))"
            seen, want = "channels-last (N, H, W, C)", "channels-first (N, C, H, W)"
        else:
            fix = "np.transpose(x, (0, 2, 3, 1)) or tf.transpose(x, (0, 2, 3, 1))"
            seen, want = "channels-first (N, C, H, W)", "channels-last (N, H, W, C)"
        raise InputError(f"the input of shape {shape} looks {seen}, but this {framework} "
                         f"model expects {want} with {channels} channels. Transpose it "
                         f"(never reshape): {fix}")
    raise InputError(f"this {framework} model expects {channels} input channels on axis "
                     f"{channel_axis} {expected}; the input has shape {shape}")


def disconnected_message(wrt: str | None) -> str:
    """Message for a score whose gradient is not connected to the input / layer."""
    place = "the input" if wrt is None else f"layer {wrt!r}"
    return (f"the explained score does not depend on {place}: its gradient is not "
            "connected. Check the target (e.g. a neuron before the layer), or that the "
            "model uses its input")


def multiple_outputs_message(kind: str, purpose: str) -> str:
    """Message for a class target on a model that returns several tensors."""
    return (f"this model returns {kind}, not one tensor; for a {purpose} pass "
            "target=callable(outputs) -> one score per sample, e.g. lambda out: out[0][:, 3]")


def check_unit(target, shape: tuple, channel_axis: int) -> None:
    """Check a neuron index / channel against one sample's layer output ``shape``."""
    if isinstance(target, ChannelTarget):
        count = shape[channel_axis]
        if not -count <= target.channel < count:
            raise TargetError(f"channel {target.channel} is out of range for layer "
                              f"{target.layer!r} with {count} channels (output {shape})")
        return
    if len(target.index) != len(shape) or any(
            not -s <= i < s for i, s in zip(target.index, shape)):
        raise TargetError(f"neuron index {target.index} does not fit layer {target.layer!r} "
                          f"whose output per sample has shape {shape}")


def group_calls(names) -> dict[str, dict[int | None, str]]:
    """``{layer: {call index or None: name}}`` for layer names, ``"relu#2"`` being call 2 of
    layer ``relu`` and a plain name (``None``) the layer's only call."""
    wanted: dict[str, dict[int | None, str]] = {}
    for name in names:
        base, _, k = name.partition("#")
        wanted.setdefault(base, {})[int(k) if k else None] = name
    return wanted


class CallPicker:
    """Counts the calls of one layer during a pass and names those to record."""

    def __init__(self, base: str, calls: dict[int | None, str]) -> None:
        self.base, self.calls, self.count = base, calls, 0

    def __call__(self) -> str | None:
        """The name under which this call is recorded, or ``None`` to leave it alone."""
        k = self.count
        self.count += 1
        if None in self.calls:
            if k > 0:
                raise UnsupportedError(shared_layer_message(self.base))
            return self.calls[None]
        return self.calls.get(k)


def check_ran(store: dict, names) -> None:
    """Every named layer output was recorded in the pass (else it did not run)."""
    missing = [name for name in names if name not in store]
    if missing:
        raise LayerNotFoundError(never_ran_message(missing[0]))


def not_a_tensor_message(name: str, output) -> str:
    return (f"layer {name!r} returns {type(output).__name__}, not a tensor; address a layer "
            "(or submodule) whose output is a single tensor")


def shared_layer_message(name: str) -> str:
    """Message for a plain name given for a layer that runs several times per pass."""
    return (f"layer {name!r} runs more than once in one forward pass (a shared module or "
            f"layer); address one call: '{name}#0' for the first, '{name}#-1' for the last "
            "(see cl.layer_calls(model, x))")


def never_ran_message(name: str) -> str:
    """Message for a layer that exists but did not run in the forward pass."""
    base, _, k = name.partition("#")
    if k:
        return (f"layer {base!r} did not run a call #{k} in the forward pass for this input; "
                "see cl.layer_calls(model, x) for the calls that run")
    return (f"layer {name!r} is part of the model but does not run in its forward pass for "
            "this input, so it has no output to explain; pick a layer that runs (see "
            "cl.layer_calls(model, x))")


def model_error(error: Exception, what: str, framework: str) -> ModelError:
    """A :class:`ModelError` for an exception raised by the model's own code."""
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    detail = " ".join(line.strip() for line in text[1:4] if line.strip())
    if isinstance(error, TypeError) and any(word in first for word in (
            "argument", "positional", "keyword")):
        fix = ("crosslens calls model(x) (model(*inputs) for a tuple, model(**inputs) for a "
               "dict of inputs); if the model needs other arguments, wrap it in a module "
               "whose forward takes only the inputs to explain and supplies the rest")
    else:
        fix = ("check that the input has the shape, layout and dtype the model expects "
               "(the model runs as it would in model(x))")
    message = (f"the {framework} model raised {type(error).__name__} when crosslens ran it on "
               f"{what}: {first}" + (f" {detail}" if detail else "") + f". Fix: {fix}")
    return ModelError(message)
