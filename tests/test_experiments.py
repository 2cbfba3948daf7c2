"""The scaling experiments at small sizes: each one against the theory it illustrates."""

import doctest
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minattn.experiments as ex
from minattn.experiments import e3_stepsize, e6_training, suite
from minattn.experiments.common import draw_qkv, softmax_rows
from minattn.kernels import numba_math


def by(rows, **match):
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def one(rows, **match):
    (row,) = by(rows, **match)
    return row


# -- what the experiments share ------------------------------------------------------------


def test_drawing_v_and_dout_leaves_q_and_k_as_they_were():
    q, k = draw_qkv(2, 16, 0, 4, 8)
    q3, k3, v = draw_qkv(2, 16, 0, 4, 8, value_dim=3)
    q4, k4, v4, dout = draw_qkv(2, 16, 0, 4, 8, value_dim=3, dout=True)
    assert q.shape == (4, 16) and k.shape == (8, 16) and v.shape == (8, 3)
    assert dout.shape == (4, 3)
    for x, y in ((q, q3), (q, q4), (k, k3), (k, k4), (v, v4)):
        np.testing.assert_array_equal(x, y)


# -- 1. score spread and entropy ------------------------------------------------------------


@pytest.fixture(scope="module")
def spread():
    return ex.score_spread(d_values=(16, 64, 256, 1024), seeds=(0,), n_queries=256)


@pytest.mark.parametrize("d", [16, 64, 256, 1024])
def test_score_std_is_c_sqrt_d(spread, d):
    unscaled = one(spread, d=d, scaling="unscaled")
    assert unscaled["score_std"] == pytest.approx(math.sqrt(d), rel=0.05)
    assert one(spread, d=d, scaling="sqrt")["score_std"] == pytest.approx(1.0, rel=0.05)
    assert one(spread, d=d, scaling="linear")["score_std"] == pytest.approx(d**-0.5, rel=0.05)


@pytest.mark.parametrize("d", [16, 64, 256, 1024])
def test_scaled_entropy_is_ln_n_minus_half(spread, d):
    row = one(spread, d=d, scaling="sqrt")
    assert abs(row["entropy_mean"] - (math.log(128) - 0.5)) < 0.1
    assert row["saturated_fraction"] == 0


def test_unscaled_rows_saturate_as_d_grows(spread):
    ds = (16, 64, 256, 1024)
    saturated = [one(spread, d=d, scaling="unscaled")["saturated_fraction"] for d in ds]
    entropy = [one(spread, d=d, scaling="unscaled")["entropy_median"] for d in ds]
    assert saturated == sorted(saturated) and saturated[-1] > 0.5
    assert entropy == sorted(entropy, reverse=True) and entropy[-1] < 0.05


def test_rows_are_reproducible_from_their_seed():
    alone = ex.score_spread(d_values=(64,), seeds=(3,), n_queries=32)
    among = by(ex.score_spread(d_values=(16, 64), seeds=(2, 3), n_queries=32), d=64, seed=3)
    assert alone == among


# -- 2. Jacobian and gradients --------------------------------------------------------------


def test_jacobian_norm_matches_the_explicit_matrix(rng):
    probs, _, _ = softmax_rows(rng.standard_normal((20, 7)) * 3)
    explicit = [np.linalg.norm(np.diag(p) - np.outer(p, p)) for p in probs]
    np.testing.assert_allclose(ex.jacobian_fro(probs), explicit, rtol=1e-12)


def test_jacobian_norm_special_rows():
    n = 128
    uniform = np.full((1, n), 1 / n)
    tie = np.zeros((1, n))
    tie[0, :2] = 0.5
    onehot = np.eye(n)[:1]
    assert ex.jacobian_fro(uniform)[0] == pytest.approx(math.sqrt(n - 1) / n)
    assert ex.jacobian_fro(tie)[0] == pytest.approx(0.5)
    assert ex.jacobian_fro(onehot)[0] == 0


def test_jacobian_norm_of_a_saturated_row_keeps_its_digits():
    # p = (1 - 2e-20, 1e-20, 1e-20): J_00 = p0 (1 - p0) ~ 2e-20, off-diagonal ~ 1e-20;
    # computing 1 - p0 directly would give 0 and lose the diagonal entirely.
    probs, _, _ = softmax_rows(np.array([[0.0, -46.0517, -46.0517]]))
    eps = math.exp(-46.0517)
    expected = math.sqrt((2 * eps) ** 2 + 2 * eps**2 + 2 * eps**2 + 2 * eps**4)
    assert ex.jacobian_fro(probs)[0] == pytest.approx(expected, rel=1e-6)


@pytest.fixture(scope="module")
def flow():
    return ex.gradient_flow(d_values=(16, 256, 4096), seeds=(0,), n_queries=64)


def test_jacobian_collapses_unscaled_and_not_scaled(flow):
    scaled = [one(flow, d=d, scaling="sqrt")["jacobian_fro_median"] for d in (16, 256, 4096)]
    unscaled = [one(flow, d=d, scaling="unscaled")["jacobian_fro_median"] for d in (16, 256, 4096)]
    assert max(scaled) / min(scaled) < 1.3
    assert unscaled == sorted(unscaled, reverse=True)
    assert unscaled[-1] < 1e-4 * scaled[-1]


def test_unscaled_gradients_are_larger_at_small_d_and_dead_at_large_d(flow):
    def median(d, s):
        return one(flow, d=d, scaling=s)["grad_q_median"]

    assert median(16, "unscaled") > 2 * median(16, "sqrt")  # the missing 1/sqrt(d) = 1/4
    assert median(4096, "unscaled") < 1e-2 * median(4096, "sqrt")
    row = one(flow, d=4096, scaling="unscaled")
    assert row["grad_q_mean"] > 100 * row["grad_q_median"]  # heavy tail: a few huge rows


# -- 3. step size, precision, gradcheck -----------------------------------------------------


@pytest.fixture(scope="module")
def curves():
    return ex.step_size_curve(d_values=(16,), scalings=("sqrt", "unscaled"), seeds=(0, 1))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("scaling", ["sqrt", "unscaled"])
def test_best_step_is_near_theory(curves, dtype, scaling):
    h, error = e3_stepsize.best_step(curves, 16, scaling, dtype)
    theory = e3_stepsize.best_step_theory(dtype, ex.scale_for(scaling, 16))
    assert theory / 10 < h < theory * 10
    assert error < 10 * e3_stepsize.best_error_theory(dtype)


def test_best_step_theory_values():
    assert e3_stepsize.best_step_theory("float64") == pytest.approx(7e-6, rel=0.05)
    assert e3_stepsize.best_step_theory("float32") == pytest.approx(5.6e-3, rel=0.05)
    assert e3_stepsize.best_step_theory("float64", 1 / 8) == pytest.approx(8 * 6.93e-6, rel=0.01)


def test_v_curve_has_both_branches(curves):
    errors = {r["h"]: r["rel_error"] for r in by(curves, scaling="sqrt", dtype="float64", seed=0)}
    h_best, _ = e3_stepsize.best_step(curves, 16, "sqrt", "float64")
    assert errors[0.1] > 1e3 * errors[h_best]  # truncation, left
    assert errors[1e-10] > 1e3 * errors[h_best]  # round-off, right


def test_a_wrong_backward_is_caught_at_every_step(rng):
    q, k, v, u = (rng.standard_normal(s) for s in [(3, 8), (5, 8), (5, 4), (3, 4)])
    fn = e3_stepsize._attention(8**-0.5)
    analytical = e3_stepsize.analytical_gradients(fn, [q, k, v], u)
    numerical = e3_stepsize.numerical_gradients(fn, [q, k, v], u, 1e-5)
    assert e3_stepsize._relative_error(numerical, analytical) < 1e-9
    wrong = [analytical[0] * 1.01, analytical[1], analytical[2]]
    assert e3_stepsize._relative_error(numerical, wrong) > 1e-3


def test_gradcheck_passes_in_float64_and_fails_in_float32():
    rows = ex.gradcheck_pass_rate(scalings=("sqrt", "unscaled"), seeds=(0, 1, 2))
    assert all(r["passed"] for r in by(rows, dtype="float64"))
    assert not any(r["passed"] for r in by(rows, dtype="float32"))


# -- 4. dead gradients ----------------------------------------------------------------------


def test_dead_gradients_look_wrong_only_unscaled():
    rows = ex.dead_gradients(d_values=(64, 1024), scalings=("sqrt", "unscaled"), seeds=(0,),
                          n_queries=4)
    assert all(r["bad_entry_fraction"] == 0 for r in by(rows, scaling="sqrt"))
    assert one(rows, d=1024, scaling="unscaled")["bad_entry_fraction"] > \
        one(rows, d=64, scaling="unscaled")["bad_entry_fraction"]
    assert one(rows, d=1024, scaling="unscaled")["bad_entry_fraction"] > 0.05
    assert all(r["normwise_error"] < 1e-6 for r in rows)  # yet the backward is right


# -- 5. overflow and flash ------------------------------------------------------------------


def test_softmax_without_max_overflows_unscaled_only():
    rows = ex.naive_softmax_nans(d_values=(64, 4096), seeds=(0,), n_queries=64)
    assert one(rows, d=4096, scaling="unscaled", dtype="float32")["nan_row_fraction"] == 1
    assert one(rows, d=64, scaling="unscaled", dtype="float32")["nan_row_fraction"] == 0
    assert one(rows, d=64, scaling="unscaled", dtype="float16")["nan_row_fraction"] == 1
    assert all(r["nan_row_fraction"] == 0 for r in by(rows, scaling="sqrt"))
    assert all(r["nan_row_fraction"] == 0 for r in by(rows, dtype="float64"))
    assert all(r["nan_row_fraction_stable"] == 0 for r in rows)


def test_flash_agrees_with_dense_even_unscaled():
    rows = ex.flash_agreement(d_values=(16, 4096), seeds=(0,), n_queries=16)
    assert all(r["flash_max_error"] < 1e-14 and not r["flash_nan"] for r in rows)


# -- 6. training ----------------------------------------------------------------------------


def test_sensitivity_counts_divergence_as_the_initial_loss():
    assert e6_training.sensitivity([1.0, 2.0, math.nan], 3.0) == pytest.approx(1.0)
    assert e6_training.sensitivity([0.5, 0.5, 0.5], 3.0) == 0
    assert e6_training.sensitivity([9.0, 1.0], 3.0) == pytest.approx(1.0)  # 9 counts as 3


def test_recall_batch_asks_for_a_stored_key(rng):
    query, keys, values, answer = e6_training.recall_batch(rng, 50, 6, 16)
    for b in range(50):
        assert len(set(keys[b])) == 6
        (where,) = np.flatnonzero(keys[b] == query[b])
        assert values[b, where] == answer[b]


def test_scaled_head_learns_recall():
    run = e6_training.train_recall(16, "sqrt", "adam", 3e-2, seed=0, steps=150, n_pairs=4)
    assert run["final_loss"] < 0.3 * run["initial_loss"]


def test_lr_sensitivity_rows():
    rows = ex.lr_sensitivity(d_values=(16,), seeds=(0,), optimizers=("sgd",), steps=5,
                          learning_rates={"sgd": (0.1, 1e3)})
    runs, sweeps = by(rows, kind="run"), by(rows, kind="sweep")
    assert len(runs) == 4 and len(sweeps) == 2
    assert {r["scaling"] for r in sweeps} == {"sqrt", "unscaled"}
    assert all(r["lr_sensitivity"] >= 0 and r["experiment"] == 6 for r in sweeps)


def _sweeps(d, optimizer, sensitivity, best_loss, trained):
    """Sweep rows of experiment 6, as lr_sensitivity writes them: {scaling: value} each."""
    return [dict(experiment=6, kind="sweep", d=d, optimizer=optimizer, scaling=s, seed=0,
                 lr_sensitivity=sensitivity[s], best_loss=best_loss[s],
                 trained_fraction=trained[s], best_lr=1.0) for s in ("sqrt", "unscaled")]


def test_training_key_number_says_when_the_unscaled_head_never_trains():
    # several times more sensitive, but only because nothing trains: not what is expected
    rows = _sweeps(64, "sgd", {"sqrt": 0.1, "unscaled": 0.5}, {"sqrt": 1e-3, "unscaled": 2.0},
                   {"sqrt": 0.8, "unscaled": 0.0})
    ((what, measured, expected, holds),) = e6_training.key_numbers(rows)
    assert measured == "5x" and "at least 2x" in expected
    assert holds.startswith("**no**") and "no learning rate trains the unscaled head" in holds
    # both heads trained, the unscaled one five times as sensitive: the expectation holds
    rows = _sweeps(64, "sgd", {"sqrt": 0.1, "unscaled": 0.5}, {"sqrt": 1e-3, "unscaled": 0.01},
                   {"sqrt": 0.8, "unscaled": 0.4})
    assert e6_training.key_numbers(rows)[0][3] == "yes"
    rows = _sweeps(64, "sgd", {"sqrt": 0.4, "unscaled": 0.5}, {"sqrt": 1e-3, "unscaled": 0.01},
                   {"sqrt": 0.8, "unscaled": 0.4})
    assert e6_training.key_numbers(rows)[0][3] == "**no**: only 1.25x"


def test_percentages_of_a_small_share_never_read_zero():
    fmt = ex.tables.fmt
    assert [fmt(x, "%") for x in (0, 1.2e-5, 0.0062, 0.5)] == ["0%", "0.0012%", "0.62%", "50%"]


def test_a_key_number_must_say_whether_it_holds():
    found = ex.tables.KeyNumbers()
    with pytest.raises(TypeError, match="holds must be True or False"):
        found.add("a claim", 1.0, "several times", "x")  # a style where the check should be
    found.add("a claim", 1.0, "above 2", False, note="only 1")
    found.add("left out", None, "anything", True)
    assert found == [("a claim", "1", "above 2", "**no**: only 1")]


def test_the_report_counts_the_expectations_that_fail():
    rows = ex.naive_softmax_nans(d_values=(1024, 4096), seeds=(0,))  # 256 queries, as in full
    text = suite._key_numbers(rows)
    assert "holds?" in text and "All 3 expectations hold in this run." in text
    flipped = [dict(r, nan_row_fraction=0.5) if r["scaling"] == "sqrt" else r for r in rows]
    text = suite._key_numbers(flipped)
    assert "2 of 3 expectations hold in this run; the 1 that do not are marked **no**" in text
    assert "| NaN rows, float32, scaled (worst d) | 50% |" in text


def test_training_figure_and_section_name_every_panel():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    rows = ex.lr_sensitivity(d_values=(16, 32), seeds=(0,), steps=3,
                             learning_rates={"sgd": (0.1, 1.0), "adam": (1e-2, 1e-1)})
    fig = e6_training.figure(plt, rows)
    titles = [ax.get_title() for ax in fig.axes]
    plt.close(fig)
    assert [t[:4] for t in titles] == ["(a) ", "(b) ", "(c) ", "(d) "]  # one column of four
    assert all(ax.get_position().x0 == fig.axes[0].get_position().x0 for ax in fig.axes)
    text = e6_training.section(rows)
    for letter, (d, opt) in zip("abcd", e6_training.panels(rows)):
        assert f"({letter}) d = {d} with {e6_training.OPTIMIZER_NAMES[opt]}" in text


# -- the examples in the docstrings -------------------------------------------------------


@pytest.mark.parametrize("module", [ex, *(getattr(ex, f"e{n}_{name}") for n, name in (
    (1, "spread"), (2, "gradients"), (3, "stepsize"), (4, "dead"), (5, "overflow"),
    (6, "training")))], ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_the_docstring_examples_print_what_they_say(module):
    failed, tried = doctest.testmod(module, verbose=False, report=True)
    assert failed == 0 and tried >= 1


# -- the names of the scalings --------------------------------------------------------------


def test_the_old_name_none_is_unscaled_with_a_warning():
    with pytest.warns(DeprecationWarning, match='"none" is now called "unscaled"'):
        rows = ex.score_spread(d_values=(16,), scalings=("none",), seeds=(0,), n_queries=8)
    assert [r["scaling"] for r in rows] == ["unscaled"]
    with pytest.warns(DeprecationWarning, match="minattn train"):
        assert ex.scale_for("none", 64) == 1.0
    with pytest.raises(ValueError, match="unknown scaling"):
        ex.score_spread(d_values=(16,), scalings=("1/d",), seeds=(0,))


def test_old_rows_that_say_none_still_make_tables_and_reports():
    new = ex.score_spread(d_values=(16, 64), seeds=(0,), n_queries=16)
    old = [dict(r, scaling="none") if r["scaling"] == "unscaled" else dict(r) for r in new]
    saved = [dict(r) for r in old]
    assert ex.terminal_table(1, old) == ex.terminal_table(1, new)
    config = {"quick": True, "experiments": [1]}

    def report(rows):  # without the line that says when it was made
        text = ex.markdown_report(rows, {}, config, {})
        return [line for line in text.splitlines() if not line.startswith("Made by")]

    assert report(old) == report(new)
    assert old == saved  # the rows read are never changed


# -- the same rows on every run ------------------------------------------------------------

# One process: compile (or load) numba's row kernels as any earlier experiment would, then
# compute experiments 3 and 4 at their --quick settings and print their rows.
ROWS_OF_3_AND_4 = """
import json, numpy as np
from minattn.kernels import numba_rows
from minattn.experiments import suite
numba_rows.softmax_backward(numba_rows.softmax_forward(np.ones((4, 8))), np.ones((4, 8)))
print(json.dumps([r for n in (3, 4) for r in suite.BY_NUMBER[n].run(quick=True)]))
"""


@pytest.mark.slow
@pytest.mark.skipif(not numba_math.available(), reason="numba is not installed: no compiled "
                    "kernels whose cache could change the results")
def test_gradient_checks_give_the_same_bits_with_a_cold_and_a_warm_numba_cache(tmp_path):
    cache = tmp_path / "numba_cache"  # fresh: the first process compiles, the second loads
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), MINATTN_KERNELS="fast",
               PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    runs = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", ROWS_OF_3_AND_4], env=env, cwd=root,
                              capture_output=True, text=True, check=True)
        runs.append(json.loads(done.stdout.splitlines()[-1]))
        assert any(cache.rglob("*.nbi"))  # the kernels were written to (then read from) disk
    cold, warm = runs
    assert {r["experiment"] for r in cold} == {3, 4}
    assert cold == warm  # every row, to the last bit
    assert suite.BY_NUMBER[3].kernels() == suite.BY_NUMBER[4].kernels() == "numpy"
