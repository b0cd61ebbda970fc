"""Every model of the contract registry on each device (``device_xp``: NumPy, the strict CuPy stand-in,
CuPy where a GPU is seen): forward, loss and backward equal NumPy's in float64, and the state dict
of device parameters round-trips."""

import numpy as np
import pytest
from test_model_contract import MODELS, Case

from whitebox.backend import to_host, tree_to_device
from whitebox.models import crate_lm, crate_mae


def _on_device(case, inputs, xp):
    out = {}
    for key, value in inputs.items():
        if isinstance(value, crate_mae.Mask):
            out[key] = crate_mae.Mask(*tree_to_device(value._asdict(), xp).values())
        else:
            out[key] = tree_to_device({key: value}, xp)[key]
    return out


def _loss(case, out, inputs):
    """The model's own loss, or the classifiers' dlogits as the gradient (the loss itself is not compared)."""
    if case.model in (crate_lm, crate_mae):
        return case.loss(out, inputs)
    return None, inputs["dlogits"]


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_loss_and_backward_on_the_device_equal_numpy(name, device_xp, device):
    case = Case(name)
    params = case.model.init(case.cfg, seed=0, dtype=np.float64)
    inputs = case.inputs(np.random.default_rng(0))
    out, cache = case.forward(params, inputs)
    loss, dout = _loss(case, out, inputs)
    grads = case.model.backward(dout, cache)

    on_device = case.model.init(case.cfg, seed=0, dtype=np.float64, device=device)
    assert all(np.array_equal(to_host(on_device[k]), params[k]) for k in params)
    device_inputs = _on_device(case, inputs, device_xp)
    d_out, d_cache = case.forward(on_device, device_inputs)
    d_loss, d_dout = _loss(case, d_out, device_inputs)
    d_grads = case.model.backward(d_dout, d_cache)

    assert type(d_out) is type(device_xp.asarray(out)) and set(d_grads) == set(grads)
    np.testing.assert_allclose(to_host(d_out), out, rtol=1e-12, atol=1e-12)
    if loss is not None:
        assert abs(float(d_loss) - float(loss)) <= 1e-12 * max(1.0, abs(float(loss)))
    for k, g in grads.items():
        assert type(d_grads[k]) is type(d_out), k
        np.testing.assert_allclose(to_host(d_grads[k]), g, rtol=1e-11, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("name", ["crate-cls", "crate-alpha-+O+D+R"])
def test_state_dict_of_device_parameters_round_trips(name, device_xp, device):
    model, cfg = MODELS[name]
    params = model.init(cfg, seed=0, dtype=np.float64, device=device)
    sd = model.to_torch_state_dict(params, cfg)
    assert all(type(v) is np.ndarray for v in sd.values())
    back = model.from_torch_state_dict(tree_to_device(sd, device_xp), cfg, device=device)  # a state dict of device arrays
    assert all(np.array_equal(to_host(back[k]), to_host(params[k])) for k in params)
