"""Layers as forward/backward pairs.

Contract (CS231n / llm.c style): ``out, cache = <op>_forward(inputs, params)`` and
``grads = <op>_backward(dout, cache)``. Each cache is a ``NamedTuple`` holding exactly what the
backward needs. Code layout throughout: tokens are rows, ``x`` is ``(..., N, d)``, and a linear
map stored PyTorch-style as ``W (out, in)`` computes ``x Wᵀ``.
"""
