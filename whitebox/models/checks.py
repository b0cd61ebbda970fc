"""Input checks shared by the model modules: clear errors for wrong configs, images and params."""

from __future__ import annotations

from ..validate import check_array, check_same_backend


def positive_int(name: str, value) -> int:
    """Check that a config field is an integer > 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_images(images, cfg) -> None:
    """images must be a float array (B, channels, image_size, image_size) matching ``cfg``."""
    check_array("images", images, ndim=4, finite=False)
    _, C, H, W = images.shape
    if C != cfg.channels:
        raise ValueError(f"images have {C} channels, the config expects channels={cfg.channels}")
    if (H, W) != (cfg.image_size, cfg.image_size):
        raise ValueError(f"images are {H}x{W}, the config expects image_size={cfg.image_size}")


def check_params(params: dict, shapes: dict, inputs, name: str = "images") -> None:
    """params must have the keys and shapes of ``shapes`` and live on the inputs' backend (and,
    for floating inputs, share their dtype)."""
    missing = sorted(set(shapes) - set(params))
    if missing:
        raise ValueError(f"params is missing {missing[:5]} for this config (was it made by init with the same config?)")
    for key, shape in shapes.items():
        if tuple(params[key].shape) != shape:
            raise ValueError(f"params[{key!r}] has shape {tuple(params[key].shape)}, the config expects {shape}")
    first = params[next(iter(shapes))]
    check_same_backend(**{name: inputs, "params": first})
    if inputs.dtype.kind == "f" and inputs.dtype != first.dtype:
        raise TypeError(f"{name} have dtype {inputs.dtype} but the parameters are {first.dtype}; cast the {name}")


def is_transformer(cfg) -> bool:
    """Does ``cfg`` use the standard transformer block (``block="transformer"``: ViT, GPT) rather than CRATE's?"""
    return getattr(cfg, "block", "crate") == "transformer"


def check_crate_block(cfg, what: str) -> None:
    """``what`` exists for CRATE's own layers only: refuse a config with ``block="transformer"``."""
    if is_transformer(cfg):
        raise ValueError(f"{what}: not defined for the transformer block (cfg.block={cfg.block!r}); "
                         "it exists for block='crate' only")
