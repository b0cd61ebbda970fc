"""The config base of every model: validation read off the fields' types, and the image fields.

Every ``int`` field must be a positive integer, every ``bool`` field True or False, every
``float`` field a finite number (> 0, or >= 0 for the fields in ``NONNEGATIVE``), every ``str``
field one of ``CHOICES[name]``. A wrong value raises ``ValueError`` naming the field.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .checks import positive_int


@dataclass(frozen=True)
class ModelConfig:
    CHOICES = {}  # str field -> allowed values
    NONNEGATIVE = ("ista_lambd",)  # float fields that may be 0

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "int":
                positive_int(f.name, value)
            elif f.type == "bool" and not isinstance(value, bool):
                raise ValueError(f"{f.name} must be True or False, got {value!r}")
            elif f.type == "float":
                _check_float(f.name, value, f.name in self.NONNEGATIVE)
            elif f.type == "str" and value not in self.CHOICES[f.name]:
                raise ValueError(f"{f.name} must be one of {self.CHOICES[f.name]}, got {value!r}")

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def _check_float(name: str, value, nonnegative: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if nonnegative and not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    if not nonnegative and not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


@dataclass(frozen=True)
class ImageConfig(ModelConfig):
    """Fields shared by the image models: the images, the encoder's width and its CRATE steps."""

    image_size: int = 32
    patch_size: int = 4
    channels: int = 3
    dim: int = 192
    depth: int = 12
    heads: int = 3
    dim_head: int = 64
    ista_step: float = 0.1  # η
    ista_lambd: float = 0.1  # λ

    def __post_init__(self):
        super().__post_init__()
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})")

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    @property
    def patch_dim(self) -> int:
        return self.channels * self.patch_size**2

    @property
    def inner_dim(self) -> int:
        return self.heads * self.dim_head
