"""Zheng 2013 self-organization without input: rate, connection fraction, weights.

Zheng 2013 reports that with all five plasticity rules on and no input at all the SORN
(a) holds the E firing rate at its target H_IP, (b) lets the fraction of existing E->E
synapses settle to a plateau where structural growth and pruning balance, and (c) ends
with a strongly right-skewed, lognormal-like E->E weight distribution. This harness
measures each of the three; docs/EXPERIMENTS.md has the results.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import stats as scistats
from tqdm import tqdm

from webapp.bench.figure import png_figure
from webapp.sorn import SORN, SORNConfig

CHUNK_STEPS = 1_000


def zheng_config() -> SORNConfig:
    """Zheng, Dimitrakakis & Triesch 2013: 200 E + 40 I, all five rules on."""
    return SORNConfig(
        n_e=200,
        n_i=40,
        ee_connectivity=0.1,
        ei_connectivity=0.2,
        ie_connectivity=1.0,
        eta_stdp=0.004,
        eta_istdp=0.001,
        eta_ip=0.01,
        h_ip=0.1,
        p_add=0.1,
        w_new=0.001,
        te_max=1.0,
        ti_max=0.5,
        noise_sigma=float(np.sqrt(0.05)),
        noise_sigma_i=float(np.sqrt(0.05)),  # the lab code puts the same noise on I units
    )


def plateau_change(series: np.ndarray) -> float:
    """Relative change of a series over its last quarter (end vs. three quarters in).

    Each end point is the mean of a window of 1/20 of the series, so one noisy chunk
    does not decide it.
    """
    window = max(1, len(series) // 20)
    at_three_quarters = series[3 * len(series) // 4 - window : 3 * len(series) // 4].mean()
    at_end = series[-window:].mean()
    return float((at_end - at_three_quarters) / at_three_quarters)


def weight_shape(weights: np.ndarray) -> dict:
    """Skewness of the weights and of their logs (a lognormal has the latter near 0)."""
    positive = weights[weights > 0]
    return {
        "weight_skewness": float(scistats.skew(positive)),
        "log_weight_skewness": float(scistats.skew(np.log(positive))),
        "log_weight_mean": float(np.log(positive).mean()),
        "log_weight_std": float(np.log(positive).std()),
    }


def within_unit_spread(weights: np.ndarray, synapses: np.ndarray) -> float:
    """Mean over E units (with 2+ inputs) of the coefficient of variation of their inputs.

    Near 0 means each unit's inputs are about equal (1/k each), so any skew of the pooled
    weights comes from units differing in their number of inputs, not from STDP.
    """
    spreads = [
        row[mask].std() / row[mask].mean()
        for row, mask in zip(weights, synapses, strict=True)
        if mask.sum() >= 2
    ]
    return float(np.mean(spreads))


def selforg_run(steps: int, seed: int) -> tuple[dict, dict]:
    """Run the input-free SORN; return the summary and the time series for the plot."""
    cfg = zheng_config()
    net = SORN(cfg, seed=seed)
    chunks = max(4, steps // CHUNK_STEPS)
    rate_e, fraction = np.zeros(chunks), np.zeros(chunks)
    started = time.perf_counter()
    with tqdm(total=chunks * CHUNK_STEPS, desc="selforg", unit="step", unit_scale=True) as bar:
        for chunk in range(chunks):
            spikes = net.run(CHUNK_STEPS)
            rate_e[chunk] = spikes[:, : cfg.n_e].mean()
            fraction[chunk] = net.stats()["connection_fraction"]
            bar.update(CHUNK_STEPS)
    seconds = time.perf_counter() - started
    matrix, synapses = net.w_ee, net.ee_synapses
    weights = matrix[synapses]
    summary = {
        "steps": chunks * CHUNK_STEPS,
        "seed": seed,
        "h_ip": cfg.h_ip,
        "rate_e": float(rate_e[-max(1, chunks // 20) :].mean()),
        "connection_fraction_start": float(fraction[0]),
        "connection_fraction_end": float(fraction[-1]),
        "connection_fraction_last_quarter_change": plateau_change(fraction),
        "synapses": int(np.count_nonzero(weights)),
        **weight_shape(weights),
        "weight_cv_within_unit": within_unit_spread(matrix, synapses),
        "seconds": round(seconds, 2),
        "steps_per_sec": round(chunks * CHUNK_STEPS / seconds),
    }
    series = {"rate_e": rate_e, "connection_fraction": fraction, "weights": weights}
    return summary, series


def plot_selforg(summary: dict, series: dict, path: str) -> None:
    """Three panels: E rate, E->E connection fraction, final weight histogram (log x)."""
    steps = (np.arange(len(series["rate_e"])) + 1) * CHUNK_STEPS
    with png_figure(path, dpi=110, ncols=3, figsize=(13, 3.6)) as (fig, axes):
        ax_rate, ax_frac, ax_hist = axes
        ax_rate.plot(steps, series["rate_e"], lw=0.8)
        ax_rate.axhline(summary["h_ip"], color="k", ls="--", lw=0.8, label="H_IP")
        ax_rate.set(xlabel="step", ylabel="E firing rate", title="E rate (1k-step means)")
        ax_rate.legend()

        ax_frac.plot(steps, series["connection_fraction"], lw=0.8)
        ax_frac.set(xlabel="step", ylabel="fraction of possible E→E synapses",
                    title="E→E connection fraction")

        weights = series["weights"][series["weights"] > 0]
        bins = np.logspace(np.log10(weights.min()), np.log10(weights.max()), 40)
        ax_hist.hist(weights, bins=bins, alpha=0.7, label="synapses")
        mu, sigma = summary["log_weight_mean"], summary["log_weight_std"]
        expected = weights.size * np.diff(scistats.norm.cdf(np.log(bins), mu, sigma))
        centers = np.sqrt(bins[:-1] * bins[1:])
        ax_hist.plot(centers, expected, "k-", lw=1, label="lognormal, same log-mean/std")
        ax_hist.set_xscale("log")
        ax_hist.set(
            xlabel="E→E weight (log-spaced bins)",
            ylabel="synapses",
            title=f"final weights (skew {summary['weight_skewness']:.1f})",
        )
        ax_hist.legend(fontsize=8)

        for ax in (ax_rate, ax_frac):
            ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=3_000_000, help="input-free plastic steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=str, default=None, help="PNG path for the three panels")


def run(args: argparse.Namespace) -> dict:
    summary, series = selforg_run(args.steps, args.seed)
    if args.plot:
        plot_selforg(summary, series, args.plot)
    return {**summary, "plot": args.plot}


def format_report(result: dict) -> str:
    return "\n".join(f"{key:<42} {value}" for key, value in result.items())
