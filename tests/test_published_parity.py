"""whitebox against recorded outputs of the published PyTorch models, without PyTorch.

``benchmarks/record_parity.py`` ran the official models of ``benchmarks/torch_crate.py`` (PyTorch
CRATE with cls and mean pooling, the CRATE-alpha port in the paper's four ablation variants) in
float64 on whitebox-initialised weights and stored, under the official state-dict names, the
weights, the input, the logits and every parameter's gradient of ``sum(logits * dlogits)``
(docs/reference.md §5 and §6). Here whitebox loads each state dict with ``from_torch_state_dict``
and must reproduce the logits and every gradient to a relative error below 1e-9.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

TOLERANCE = 1e-9
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _record_parity():
    spec = importlib.util.spec_from_file_location("benchmarks_record_parity", BENCHMARKS / "record_parity.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


record_parity = _record_parity()


def test_every_record_is_present_and_nothing_else():
    data = Path(record_parity.DATA)
    expected = {Path(record_parity.record_path(case)).name for case in record_parity.CASES}
    found = {p.name for p in data.glob("parity_*.npz")}
    assert found == expected, (
        f"missing {sorted(expected - found)}, stale {sorted(found - expected)}: "
        "run `python benchmarks/record_parity.py` where PyTorch is installed"
    )


@pytest.mark.parametrize("case", list(record_parity.CASES))
def test_whitebox_reproduces_the_published_model(case):
    rec = record_parity.load_record(case)
    meta = rec["meta"]
    assert (meta["case"], meta["model"], meta["config"], meta["variant"]) == (case, *record_parity.CASES[case]), (
        f"{case}: the record was made for another case ({meta}); re-run benchmarks/record_parity.py"
    )
    module, cfg = record_parity.case_config(meta["model"], meta["config"], meta["variant"])
    for name, value in [("images", rec["images"]), ("dlogits", rec["dlogits"]), *rec["state"].items()]:
        assert value.dtype == np.float64, f"{case}: {name} is {value.dtype}, the record must be float64"

    logits, grads = record_parity.whitebox_outputs(module, cfg, rec["state"], rec["images"], rec["dlogits"])

    assert logits.dtype == np.float64
    assert record_parity.relative_error(logits, rec["logits"]) < TOLERANCE
    assert set(grads) == set(rec["grad"]) == set(rec["state"]), (
        f"{case}: whitebox's parameters {sorted(set(grads) ^ set(rec['grad']))} differ from the official ones"
    )
    errors = {name: record_parity.relative_error(grads[name], g) for name, g in rec["grad"].items()}
    bad = {name: e for name, e in errors.items() if not e < TOLERANCE}
    assert not bad, f"{case}: gradients off by more than {TOLERANCE} (relative): {bad}"


def test_a_wrong_weight_is_detected():
    """The comparison can fail: one perturbed weight moves the logits and gradients past the tolerance."""
    rec = record_parity.load_record("crate_cls")
    module, cfg = record_parity.case_config(rec["meta"]["model"], rec["meta"]["config"], rec["meta"]["variant"])
    state = dict(rec["state"])
    name = "transformer.layers.1.1.fn.weight"
    state[name] = state[name] * (1 + 1e-6)
    logits, grads = record_parity.whitebox_outputs(module, cfg, state, rec["images"], rec["dlogits"])
    assert record_parity.relative_error(logits, rec["logits"]) > TOLERANCE
    assert record_parity.relative_error(grads[name], rec["grad"][name]) > TOLERANCE
