"""Whole models, each an embedding, a stack of blocks (:mod:`whitebox.blocks`) and a head: CRATE
(:mod:`.crate`), CRATE-alpha (:mod:`.crate_alpha`), CRATE-MAE (:mod:`.crate_mae`) and causal
CRATE (:mod:`.crate_lm`)."""
