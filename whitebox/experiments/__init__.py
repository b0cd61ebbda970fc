"""Experiments that train several models with the shared training loop and compare them.

==================  ==========================================================================
``ablation``        CRATE-alpha's ablation (Fig. 1 / 7): CRATE, +O, +O+D, +O+D+R over seeds
==================  ==========================================================================
"""
