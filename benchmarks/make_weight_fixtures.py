"""Writes the small checkpoint files of tests/data/weights/ with PyTorch (run where torch is installed).

The official models (benchmarks/torch_crate.py, the published code's layout and arithmetic) with
tiny configs, saved in the forms users meet (docs/reference.md §10), each with the logits PyTorch computes
on recorded images, so that tests/test_weights_fixtures.py checks without PyTorch that whitebox
reads each file and gives the official logits::

    crate_state_dict.pth         model.state_dict()                                     float32
    crate_training.pth.tar       {'epoch', 'arch', 'state_dict' ('module.' keys, DataParallel),
                                  'best_acc1' (a tensor), 'optimizer' (AdamW), 'scheduler'}
    crate_demo_fp16.pth          {'model': state_dict in float16}   (the emergence notebooks' form)
    crate_alpha_state_dict.pth   the CRATE-alpha port's state_dict                         float32
    crate_alpha.safetensors      the same, written by the safetensors package
    tensors.pth                  strided and offset views, bfloat16, float16/64, integer and bool tensors
    expected.json                images, logits, the tensors' values, and the CRATE position
                                 embedding interpolated to a 3×3 grid by F.interpolate with the logits
                                 of the official model at that image size

Usage: python benchmarks/make_weight_fixtures.py [OUT_DIR]   (default tests/data/weights)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch_crate  # noqa: E402
from whitebox.models import crate, crate_alpha  # noqa: E402

SIZE = dict(image_size=8, patch_size=4, channels=3, num_classes=3, dim=8, depth=2, heads=2, dim_head=4)
CRATE_CFG = crate.Config(**SIZE)
ALPHA_CFG = crate_alpha.Config(**SIZE)
LARGER_IMAGE = 12  # a 3×3 grid instead of 2×2


def logits(model, images) -> list:
    with torch.no_grad():
        return model(torch.from_numpy(images)).double().tolist()


def official_models(seed=0):
    torch.manual_seed(seed)
    model = torch_crate.crate_from_config(CRATE_CFG).eval()
    alpha = torch_crate.crate_alpha_from_config(ALPHA_CFG).eval()
    with torch.no_grad():  # random LayerNorm affines, so that a swapped weight and bias would show
        for m in (model, alpha):
            for name, p in m.named_parameters():
                if "norm" in name or "mlp_head.0" in name:
                    p.add_(0.3 * torch.randn_like(p))
    return model, alpha


def training_checkpoint(model, images):
    """One AdamW step through DataParallel, saved as PyTorch CRATE's main.py saves."""
    parallel = torch.nn.DataParallel(model)
    optimizer = torch.optim.AdamW(parallel.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 10)
    loss = F.cross_entropy(parallel(torch.from_numpy(images)), torch.tensor([0, 2]))
    loss.backward()
    optimizer.step()
    scheduler.step()
    return {"epoch": 1, "arch": "CRATE_tiny", "state_dict": parallel.state_dict(), "best_acc1": torch.tensor(33.3),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}


def tensors():
    """Views on shared storages and every dtype the reader supports."""
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 7
    values = {
        "offset_strided": base[1:, ::2], "transposed": base.t(), "row": base[2],
        "bfloat16": (torch.randn(3, 4, generator=torch.Generator().manual_seed(1))).bfloat16(),
        "float16": torch.linspace(-2, 2, 5).half(), "float64": torch.linspace(0, 1, 4, dtype=torch.float64),
        "int64": torch.arange(-3, 3), "int32": torch.arange(4, dtype=torch.int32),
        "int16": torch.arange(-2, 2, dtype=torch.int16), "int8": torch.arange(-4, 4, dtype=torch.int8),
        "uint8": torch.arange(250, 256, dtype=torch.uint8), "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 3),
    }
    expected = {k: {"dtype": str(v.dtype).removeprefix("torch."), "shape": list(v.shape),
                    "values": (v.float() if v.dtype == torch.bfloat16 else v).flatten().tolist()}
                for k, v in values.items()}
    return values, expected


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    larger = rng.standard_normal((2, 3, LARGER_IMAGE, LARGER_IMAGE)).astype(np.float32)
    model, alpha = official_models()
    expected = {"images": images.tolist(), "larger_images": larger.tolist(), "logits": {}}

    torch.save(model.state_dict(), out / "crate_state_dict.pth")
    expected["logits"]["crate_state_dict.pth"] = logits(model, images)
    torch.save({"model": {k: v.half() for k, v in model.state_dict().items()}}, out / "crate_demo_fp16.pth")
    expected["logits"]["crate_demo_fp16.pth"] = logits(model, images)  # the float32 model's

    grid = LARGER_IMAGE // SIZE["patch_size"]
    pos = model.pos_embedding.detach()
    resized = F.interpolate(pos[:, 1:].reshape(1, 2, 2, -1).permute(0, 3, 1, 2), size=(grid, grid), mode="bicubic",
                            align_corners=False).permute(0, 2, 3, 1).reshape(1, grid * grid, -1)
    big = torch_crate.crate_from_config(CRATE_CFG.replace(image_size=LARGER_IMAGE)).eval()
    big.load_state_dict({**model.state_dict(), "pos_embedding": torch.cat([pos[:, :1], resized], 1)}, strict=True)
    expected["resized_pos_embedding"] = big.pos_embedding.detach().double().tolist()
    expected["larger_logits"] = logits(big, larger)

    torch.save(training_checkpoint(model, images), out / "crate_training.pth.tar")
    expected["logits"]["crate_training.pth.tar"] = logits(model.eval(), images)  # after the step

    torch.save(alpha.state_dict(), out / "crate_alpha_state_dict.pth")
    save_file({k: v.contiguous() for k, v in alpha.state_dict().items()}, str(out / "crate_alpha.safetensors"))
    expected["logits"]["crate_alpha_state_dict.pth"] = expected["logits"]["crate_alpha.safetensors"] = \
        logits(alpha, images)

    values, expected["tensors"] = tensors()
    torch.save(values, out / "tensors.pth")
    (out / "expected.json").write_text(json.dumps(expected))
    for path in sorted(out.iterdir()):
        print(f"{path.stat().st_size:8d}  {path}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "tests/data/weights")
