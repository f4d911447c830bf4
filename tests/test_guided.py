"""Discriminator-guided sampling (jaxgan.guided, jaxgan.sampling.Guide) against known answers.

The 1-D case: p_data = N(0, 1), p_g = N(0, 2²), so the optimal D's logit is
log p_data(x) - log p_g(x) = log 2 - 3x²/8, and the guided samples must follow N(0, 1)
where plain ones follow N(0, 4).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxgan import guided, sampling, state
from jaxgan.configs import grid25


def _true_logit(x):
    return np.log(2.0) - 3 * np.asarray(x) ** 2 / 8


def _normal_ks(x, std):
    return stats.kstest(np.asarray(x) / std, "norm").pvalue


def test_exact_rejection_sampling_turns_p_g_into_p_data():
    rng = np.random.default_rng(0)
    proposals = rng.normal(0, 2, 200_000)
    logits = _true_logit(proposals)
    accepted, p = guided.drs_accept(jax.random.key(1), logits, np.log(2.0), np.float32(0.0))
    kept = proposals[np.asarray(accepted)]
    assert _normal_ks(proposals[: len(kept)], 1.0) < 1e-6  # plain sampling fails the test
    assert _normal_ks(kept, 1.0) > 1e-3  # the accepted samples pass it
    assert abs(np.std(kept) - 1) < 0.02
    # The acceptance rate of exact rejection sampling is 1/M = 1/2 here.
    assert np.mean(np.asarray(accepted)) == pytest.approx(0.5, abs=0.01)
    np.testing.assert_allclose(p, np.exp(logits - np.log(2.0)), rtol=1e-4, atol=1e-6)


def test_drs_probability_by_hand_and_finite_at_the_extremes():
    p = guided.drs_accept_probability(jnp.array([0.0, -1.0, -100.0, 100.0]), 0.0)
    np.testing.assert_allclose(p[:3], [1.0, np.exp(-1.0), np.exp(-100.0)], rtol=1e-4, atol=1e-30)
    assert float(p[3]) == pytest.approx(1.0, abs=1e-5)  # above the maximum: its own maximum (ε)
    assert np.all(np.isfinite(np.asarray(p)))
    # A gamma below zero accepts more, above zero fewer.
    s = jnp.linspace(-5, 0, 11)
    exact = guided.drs_accept_probability(s, 0.0)
    assert np.all(guided.drs_accept_probability(s, 0.0, -2.0) >= exact)
    assert np.all(guided.drs_accept_probability(s, 0.0, 2.0) <= exact)


def test_drs_gamma_is_the_percentile_of_f():
    s = jnp.linspace(-6.0, -0.5, 101)
    gamma = guided.drs_gamma(s, 0.0, 80.0)
    p = guided.drs_accept_probability(s, 0.0, gamma)
    assert float(jnp.mean(p < 0.5)) == pytest.approx(0.8, abs=0.02)


def _chain_finals(key, starts, proposals):
    chosen, moves = guided.mh_chains(key, _true_logit(starts), _true_logit(proposals))
    chosen = np.asarray(chosen)
    rows = np.arange(len(starts))
    finals = np.where(chosen < 0, starts, proposals[rows, np.maximum(chosen, 0)])
    return finals, np.asarray(moves)


@pytest.mark.parametrize("length", [1, 5, 50])
def test_with_the_optimal_d_p_data_is_the_chains_stationary_distribution(length):
    """Started at p_data, the independence chain stays at p_data after any number of steps."""
    rng = np.random.default_rng(length)
    starts = rng.normal(0, 1, 20_000)
    proposals = rng.normal(0, 2, (20_000, length))
    finals, moves = _chain_finals(jax.random.key(length), starts, proposals)
    assert _normal_ks(finals, 1.0) > 1e-3
    assert moves.sum() > 0


def test_a_chain_started_at_p_g_approaches_p_data():
    rng = np.random.default_rng(7)
    starts = rng.normal(0, 2, 20_000)
    assert _normal_ks(starts, 1.0) < 1e-6
    finals, _ = _chain_finals(jax.random.key(3), starts, rng.normal(0, 2, (20_000, 50)))
    assert _normal_ks(finals, 1.0) > 1e-3


def test_mh_chains_by_hand():
    # A proposal 50 nats worse is never accepted; one no worse always is.
    chosen, moves = guided.mh_chains(
        jax.random.key(0), jnp.array([0.0, 0.0]), jnp.array([[-50.0, 0.0, -50.0], [-50.0] * 3])
    )
    assert chosen.tolist() == [1, -1] and moves.tolist() == [1, 0]
    logits = jax.random.normal(jax.random.key(5), (64, 16))
    again = guided.mh_chains(jax.random.key(0), jnp.zeros(64), logits)
    same = guided.mh_chains(jax.random.key(0), jnp.zeros(64), logits)
    other = guided.mh_chains(jax.random.key(1), jnp.zeros(64), logits)
    assert np.array_equal(again[0], same[0]) and not np.array_equal(again[0], other[0])


def test_calibration_undoes_a_miscalibrated_d_and_reports_it():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(0, 1, 20_000), rng.normal(0, 2, 20_000)
    cal = guided.fit_calibration(4 * _true_logit(real) - 1, 4 * _true_logit(fake) - 1)
    assert cal.scale == pytest.approx(0.25, abs=0.01)
    assert cal.offset == pytest.approx(0.25, abs=0.03)
    r = cal.report
    assert r["log_loss_calibrated"] < r["log_loss_raw"]
    assert abs(r["z_calibrated"]) < 3 < abs(r["z_raw"])
    assert r["num_real"] == r["num_generated"] == 20_000
    with pytest.raises(ValueError, match="as many real as generated"):
        guided.fit_calibration(real[:10], fake[:11])
    with pytest.raises(ValueError, match="non-finite"):
        guided.fit_calibration(np.array([np.nan, 0.0]), np.zeros(2))


def test_calibrated_drs_on_a_miscalibrated_d_still_finds_p_data():
    rng = np.random.default_rng(2)
    cal = guided.fit_calibration(
        3 * _true_logit(rng.normal(0, 1, 20_000)) + 2, 3 * _true_logit(rng.normal(0, 2, 20_000)) + 2
    )
    proposals = rng.normal(0, 2, 200_000)
    logits = cal(3 * _true_logit(proposals) + 2)
    accepted, _ = guided.drs_accept(jax.random.key(0), logits, jnp.max(logits), np.float32(0.0))
    assert abs(np.std(proposals[np.asarray(accepted)]) - 1) < 0.03


@pytest.fixture(scope="module")
def toy_state():
    config = grid25.get_config()
    gan = state.build_gan(config, (2,))
    return gan, config, state.create_state(gan, state.prng_key(0))


@pytest.mark.parametrize("method", ["drs", "mh"])
def test_guide_is_seeded_and_reports_what_it_did(toy_state, method):
    gan, config, st = toy_state
    guide = sampling.Guide(sampling.Sampler.for_config(gan, config), gan)
    sampler = sampling.Sampler.for_config(gan, config)
    real = sampler.sample(st, 400, 99, ema=False)  # G's own: D cannot tell, chains move
    real += np.random.default_rng(0).normal(0, 1e-5, real.shape).astype(np.float32)
    settings = dict(method=method, real=real, chain_length=8, burn_in=500, ema=False)
    a, record = guide.sample(st, 50, 3, **settings)
    b, _ = guide.sample(st, 50, 3, **settings)
    c, _ = guide.sample(st, 50, 4, **settings)
    assert a.shape == (50, 2) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert record["method"] == method and 0 < record["acceptance_rate"] <= 1
    assert record["calibration"]["num_real"] == 200 and "z_calibrated" in record["calibration"]
    assert method in guided.summary(record)


def test_guide_refuses_too_little_held_out_data(toy_state):
    gan, config, st = toy_state
    guide = sampling.Guide(sampling.Sampler.for_config(gan, config), gan)
    with pytest.raises(sampling.GuidedSamplingError, match="held-out real"):
        guide.sample(st, 10, 0, method="drs", real=np.zeros((2, 2)))
    with pytest.raises(sampling.GuidedSamplingError, match="'drs' or 'mh'"):
        guide.sample(st, 10, 0, method="best", real=np.zeros((20, 2)))


def test_a_class_conditional_run_is_refused():
    from jaxgan.configs import mnist_cgan

    config = mnist_cgan.get_config()
    gan = state.build_gan(config, (28, 28, 1), 10)
    with pytest.raises(sampling.GuidedSamplingError, match="class-conditional"):
        sampling.Guide(sampling.Sampler.for_config(gan, config), gan)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    from jaxgan import trainer

    config = grid25.get_config()
    config.num_steps = config.ckpt_every = config.log_every = config.eval_every = 300
    config.num_eval_samples = 500
    workdir = tmp_path_factory.mktemp("guided") / "run"
    assert trainer.train_and_evaluate(config, str(workdir), log=lambda *_: None) == 0
    return workdir


def test_sample_cli_draws_with_drs_and_records_the_draw(toy_run, tmp_path, capsys):
    from jaxgan import sample

    out = tmp_path / "drs.npy"
    args = [f"--workdir={toy_run}", "--num=300", f"--out={out}", "--method=drs"]
    assert sample.main(args) == 0
    printed = capsys.readouterr().out
    record = json.loads((tmp_path / "drs.guided.json").read_text())
    assert "drs: acceptance" in printed and "guided draw's record" in printed
    assert record["method"] == "drs" and record["num"] == 300
    assert 0 < record["acceptance_rate"] < 1 and record["proposals"] >= 300
    assert record["calibration"]["num_real"] == 5000
    x = np.load(out)
    assert x.shape == (300, 2) and (tmp_path / "drs.png").exists()
    assert sample.main([*args[:2], f"--out={tmp_path / 'again.npy'}", "--method=drs"]) == 0
    assert np.array_equal(np.load(tmp_path / "again.npy"), x)  # the same seed, the same bytes
    plain = tmp_path / "plain.npy"
    assert sample.main([*args[:2], f"--out={plain}"]) == 0
    assert not np.array_equal(np.load(plain), x) and not (tmp_path / "plain.guided.json").exists()


def test_sample_cli_refuses_bad_guided_flags(toy_run, tmp_path, capsys):
    from jaxgan import sample

    base = [f"--workdir={toy_run}", "--num=10", f"--out={tmp_path / 'x.npy'}", "--method=mh"]
    with pytest.raises(SystemExit):
        sample.main([*base, "--chain_length=0"])
    assert "--chain_length must be positive" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sample.main([*base, "--drs_percentile=101"])
    assert "--drs_percentile must be in [0, 100]" in capsys.readouterr().err


def test_evaluate_cli_scores_mh_beside_plain(toy_run, capsys):
    from jaxgan import evaluate

    assert evaluate.main([f"--workdir={toy_run}"]) == 0
    plain = json.loads((toy_run / "eval.json").read_text())
    assert evaluate.main([f"--workdir={toy_run}", "--method=mh", "--chain_length=20"]) == 0
    printed = capsys.readouterr()
    assert "mh: acceptance" in printed.err and "(real data " in printed.out
    assert json.loads((toy_run / "eval.json").read_text()) == plain  # kept beside
    guided_record = json.loads((toy_run / "eval_mh.json").read_text())
    protocol = guided_record["protocol"]["guided"]
    assert protocol["method"] == "mh" and protocol["chain_length"] == 20
    assert protocol["proposals"] == 500 * 20 and 0 < protocol["acceptance_rate"] <= 1
    assert set(guided_record["metrics"]) == set(plain["metrics"]) == {
        "modes", "high_quality", "reverse_kl"
    }  # fmt: skip
    assert guided_record["real_data_floor"]["modes"] == 25


def test_refine_schedule_decays_from_the_first_rate_to_zero():
    schedule = sampling.refine_schedule(1000)
    rates = np.array([float(schedule(i)) for i in range(0, 1001, 50)])
    assert rates[0] == pytest.approx(sampling.REFINE_LEARNING_RATE)
    assert rates[-1] == pytest.approx(0.0, abs=1e-12) and np.all(np.diff(rates) < 0)
    assert float(schedule(500)) == pytest.approx(sampling.REFINE_LEARNING_RATE / 2)


def test_refine_steps_follow_the_schedule(toy_state, monkeypatch):
    gan, config, st = toy_state
    guide = sampling.Guide(sampling.Sampler.for_config(gan, config), gan)
    real = np.random.default_rng(0).normal(0, 1, (500, 2)).astype(np.float32)
    monkeypatch.setattr(sampling, "refine_schedule", lambda num_steps: lambda count: 0.0)
    still, record = guide.refine(st, real, 20, jax.random.key(0), ema=False)
    # a rate of zero throughout leaves D where it was: the optimizer takes its rate from there
    assert jax.tree.all(jax.tree.map(np.array_equal, still.d_params, st.d_params))
    assert record["learning_rate"].startswith("cosine")


def test_refining_d_with_g_fixed_lowers_its_loss_and_is_seeded(toy_state):
    gan, config, st = toy_state
    sampler = sampling.Sampler.for_config(gan, config)
    guide = sampling.Guide(sampler, gan)
    real = np.random.default_rng(0).normal(0, 1, (2000, 2)).astype(np.float32)
    refined, record = guide.refine(st, real, 200, jax.random.key(0), ema=False)
    again, _ = guide.refine(st, real, 200, jax.random.key(0), ema=False)
    assert record["refine_steps"] == 200 and record["loss_last"] < record["loss_first"] - 0.3
    assert jax.tree.all(jax.tree.map(np.array_equal, refined.d_params, again.d_params))
    for name in ("g_params", "g_ema_params", "step"):  # G and the rest are untouched
        assert jax.tree.all(jax.tree.map(np.array_equal, getattr(refined, name), getattr(st, name)))
    _, guided_record = guide.sample(
        st, 20, 0, method="mh", real=real, ema=False, chain_length=4, refine_steps=50,
        train_real=real,
    )  # fmt: skip
    assert guided_record["refine"]["refine_steps"] == 50 and "D trained 50" in guided.summary(
        guided_record
    )
    with pytest.raises(sampling.GuidedSamplingError, match="train_real"):
        guide.sample(st, 20, 0, method="mh", real=real, refine_steps=5)


def test_mode_coverage_bound_benchmark_prints_each_seed_and_refuses_bad_flags(toy_run, capsys):
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parents[1] / "benchmarks" / "mode_coverage_bound.py"
    spec = importlib.util.spec_from_file_location("mode_coverage_bound", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([str(toy_run), "--num=300000"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    row, summary = lines
    assert row["seed_index"] == 0 and row["step"] == 300 and row["samples"] == 300_000
    assert 0 < row["support_mass"] <= 1 and 0 <= row["least_mode_support"] <= 1
    # The mixture restricted to G's support is high quality wherever it is: real data's 98.9 %.
    assert row["high_quality"] > 0.97 and row["modes"] >= 1
    assert summary["seeds"] == 1
    assert script.main([str(toy_run), "--sedes=0"]) == 2
    assert "python benchmarks/mode_coverage_bound.py RUN" in capsys.readouterr().err
