"""Layers as forward/backward pairs.

Contract (CS231n / llm.c style). A leaf op: ``out, cache = <op>_forward(inputs, params…)`` and
``d_inputs… = <op>_backward(dout, cache)``, the backward taking nothing but the cache: each cache
is a ``NamedTuple`` holding exactly what the backward needs, shapes and modes included. A
composite op (the CRATE patch embedding; the sublayers and blocks of :mod:`whitebox.blocks`)
takes its parameters under local names and returns ``(dx, grads)`` under the same names; only the
caller adds a prefix. Code layout throughout: tokens are rows, ``x`` is ``(..., N, d)``, and a
linear map stored PyTorch-style as ``W (out, in)`` computes ``x Wᵀ``.
"""
