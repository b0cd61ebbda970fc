"""``whitebox segment``: object masks from a trained backbone without mask supervision, scored
(:mod:`whitebox.analysis.segmentation`), drawn by :func:`whitebox.figures.plot_segmentation`.

    whitebox segment --checkpoint runs/scenes-crate --test-limit 500 --out segment.png
"""

from __future__ import annotations

import argparse

from .. import figures
from ..analysis.maskcut import ATTENTION_MASS, MASKCUT_TAU
from ..analysis.segmentation import MASK_DATASETS, METHODS, segment_checkpoint
from .common import CommandError, add_device_argument, command, positive_float, positive_int

SEGMENT_DESCRIPTION = f"""\
Segment test images with a trained backbone's last layer, without any mask supervision, and score
the masks against the true object masks of a dataset that has them ({', '.join(MASK_DATASETS)}:
MNIST digits on photographs, see whitebox/data/scenes.py). Two methods:

  maskcut    normalised cut of the patch-feature affinity (cosine >= tau: 1, else 1e-5), the
             second-smallest generalised eigenvector split at its mean (CRATE: the qkv features
             U^T LN(z); ViT: the keys)
  attention  the patches holding a share --mass of the cls token's attention, averaged over heads

Prints the mIoU of each at pixel resolution (the patch mask upsampled to the image) and at patch
resolution (a true patch is object when >= 50% of its pixels are). Works for classifier runs
(crate, crate-alpha, vit) and self-supervised ones (dino, simdino), trained on 32 x 32 RGB images.

example:
  whitebox train --model crate --dataset scenes --epochs 5 --out runs/scenes-crate
  whitebox segment --checkpoint runs/scenes-crate --test-limit 500 --out segment.png
"""


def add_segment_arguments(p) -> None:
    p.add_argument("--checkpoint", required=True, metavar="RUN",
                   help="a run folder (its checkpoint.npz) or a checkpoint file")
    p.add_argument("--dataset", choices=MASK_DATASETS, help="test images with masks (default: the run's dataset)")
    p.add_argument("--test-limit", type=positive_int, metavar="N", help="first N test images (default: all)")
    p.add_argument("--method", choices=METHODS + ("both",), default="both", help="default both")
    p.add_argument("--tau", type=positive_float, default=MASKCUT_TAU, help=f"MaskCut's cosine threshold "
                   f"(default {MASKCUT_TAU})")
    p.add_argument("--mass", type=positive_float, default=ATTENTION_MASS,
                   help=f"share of the cls attention kept (default {ATTENTION_MASS})")
    p.add_argument("--out", metavar="FIG.png", help="draw images, true masks and predicted masks here")
    p.add_argument("--images", type=positive_int, default=6, metavar="N", help="images drawn (default 6)")
    add_device_argument(p, "$WHITEBOX_DEVICE or cpu")
    p.add_argument("--data-dir", metavar="FOLDER", help="look for the dataset files here first")


@command("segment", "unsupervised object masks (MaskCut, cls attention) of a checkpoint, scored by mIoU",
         SEGMENT_DESCRIPTION, add_segment_arguments)
def segment(args: argparse.Namespace) -> int:
    methods = METHODS if args.method == "both" else (args.method,)
    try:
        seg = segment_checkpoint(args.checkpoint, dataset=args.dataset, test_limit=args.test_limit, methods=methods,
                                 tau=args.tau, mass=args.mass, device=args.device, data_dir=args.data_dir)
    except ValueError as e:
        raise CommandError(str(e)) from None
    print(f"{seg.title}: {len(seg.raw)} test images")
    for method, scores in seg.miou.items():
        print(f"  {method:<10} mIoU {scores['pixel']:.3f} (pixel)  {scores['patch']:.3f} (patch)")
    if args.out:
        print(f"wrote {figures.plot_segmentation(seg, args.out, n_images=args.images)}")
    return 0
