"""whitebox: white-box transformers (CRATE, CRATE-alpha) as runnable, checkable mathematics.

Every layer is a step of an optimisation algorithm on the sparse rate reduction objective
``Rc(Z | U) − R(Z) + λ‖Z‖₁``, written as explicit NumPy/CuPy functions with hand-written
backward passes that the test suite checks against finite differences.
"""

__version__ = "0.1.0"
