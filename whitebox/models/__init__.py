"""Whole models: CRATE (:mod:`.crate`) and CRATE-alpha (:mod:`.crate_alpha`)."""
