"""Seeing inside trained models: numbers and tables only (the drawings are in :mod:`whitebox.figures`).

==================  ==========================================================================
``layerwise``       Rc, R, the sparse rate reduction and sparsity at every stage, two conventions
``approximations``  how good the approximations behind a layer's compression and sparse steps are
``measure``         ``whitebox measure``: both of the above for a checkpoint, as tables
``attention_maps``  cls-token attention per head and the PCA of patch features
``ablation``        CRATE-alpha's ablation (CRATE, +O, +O+D, +O+D+R) through the shared run path
``maskcut``         MaskCut (normalised cut of patch features) and the cls-attention threshold
``segmentation``    ``whitebox segment``: both on a checkpoint's last layer, mIoU against true masks
==================  ==========================================================================
"""
