"""Blocks: one layer of each kind as a forward/backward pair, and the stack that runs them.

A block module offers::

    shapes(spec)                        # local name -> Param(shape, init): the ONE place its names are spelled
    forward(z, params, spec, keep=False)  # -> (z_next, cache); params under local names
    backward(dz, cache)                 # -> (dz_prev, grads) under the same local names
    features(cache)                     # -> per-layer measurements (see :func:`whitebox.blocks.stack.layer_features`)

``spec`` is the block's own small frozen dataclass, built by the model from its config. Only
:mod:`whitebox.blocks.stack` adds the ``layers.{i}.`` prefix.

A model with a ``block`` field chooses its layer from :data:`BLOCKS`: ``"crate"`` (its CRATE layer,
the default) or ``"transformer"`` (:mod:`whitebox.blocks.transformer_layer`, the ViT/GPT baseline).
"""

BLOCKS = ("crate", "transformer")
