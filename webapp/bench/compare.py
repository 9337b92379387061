"""Side by side in one run: our engine against the PyPI `sorn` package and Brian2.

Each simulator runs in its own virtualenv (they pin other numpy/matplotlib versions than
ours) through a subprocess that prints one JSON line; all on one core (BLAS threads 1).

- `sorn` 0.7.4 (PyPI): the same model family (binary SORN, STDP, iSTDP, IP, synaptic
  normalization, structural plasticity) with the same number of E units and of E->E
  inputs per unit at the start (its I population is fixed at 0.2 n_e, and its input is
  random drive of 10 units). Both prune synapses as they learn, so the counts reported
  after the run differ with the number of steps.
- Brian2 (numpy code generation target): a comparable, not identical, network: 375 LIF
  units (n_e E + n_e/4 I), E->E 15 % with pair-based STDP, 1 ms time steps, its drive
  set so that the E units fire in about 0.1 of the steps, as ours do (H_IP), because its
  cost grows with the number of spikes.

Ours runs through `bench engine` (token input, all five rules) with both backends.
Ratios are ours / theirs, by wall time and by CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from webapp.bench import engine
from webapp.bench.figure import png_figure
from webapp.bench.measure import load_average
from webapp.sorn import SORNConfig

SORN_VENV = Path("/tmp/sornpkg-venv")
BRIAN2_VENV = Path("/tmp/brian2-venv")
SETUP = {
    "sorn": 'python3.11 -m venv {venv} && {venv}/bin/pip install sorn==0.7.4 tqdm "matplotlib<3.9"',
    "brian2": 'python3.11 -m venv {venv} && {venv}/bin/pip install brian2 "numpy<2"',
}

# The timed part of each script prints {"steps", "wall", "cpu", ...} as its last line.
SORN_SCRIPT = """
import json, sys, time
import numpy as np
from sorn import Simulator
n_e, steps, inputs_per_unit = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
inputs = np.random.default_rng(0).random((10, steps))
wall, cpu = time.perf_counter(), time.process_time()
state, _ = Simulator.run(inputs=inputs, phase="plasticity", state=None, timesteps=steps,
                         noise=True, ne=n_e, nu=10, lambda_ee=inputs_per_unit)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
print(json.dumps({"steps": steps, "wall": wall, "cpu": cpu, "neurons_e": n_e,
                  "neurons_i": int(state["Wei"].shape[0]),
                  "synapses": int((state["Wee"] > 0).sum())}))
"""

BRIAN2_SCRIPT = """
import json, sys, time
import brian2 as b
b.prefs.codegen.target = "numpy"
b.defaultclock.dt = 1 * b.ms
n_e, steps = int(sys.argv[1]), int(sys.argv[2])
n_i = n_e // 4
E = b.NeuronGroup(n_e, "dv/dt = (2 - v) / (20*ms) + 0.6 * xi * (20*ms)**-0.5 : 1",
                  threshold="v > 1", reset="v = 0", method="euler")
I = b.NeuronGroup(n_i, "dv/dt = -v / (10*ms) : 1", threshold="v > 1", reset="v = 0",
                  method="exact")
EE = b.Synapses(E, E, '''w : 1
    dapre/dt = -apre / (20*ms) : 1 (event-driven)
    dapost/dt = -apost / (20*ms) : 1 (event-driven)''',
    on_pre="v_post += w; apre += 0.01; w = clip(w + apost, 0, 0.5)",
    on_post="apost -= 0.0105; w = clip(w + apre, 0, 0.5)")
EE.connect(condition="i != j", p=0.15)
EE.w = "0.1 * rand()"
EI = b.Synapses(E, I, on_pre="v_post += 0.1"); EI.connect(p=0.2)
IE = b.Synapses(I, E, on_pre="v_post -= 0.12"); IE.connect(p=0.2)
spikes = b.SpikeMonitor(E)
net = b.Network(E, I, EE, EI, IE, spikes)
net.run(100 * b.ms)  # code generation happens here, outside the timed run
wall, cpu = time.perf_counter(), time.process_time()
net.run(steps * b.ms)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
print(json.dumps({"steps": steps, "wall": wall, "cpu": cpu, "neurons_e": n_e,
                  "neurons_i": n_i, "synapses": int(len(EE)), "target": "numpy",
                  "rate_e": spikes.num_spikes / n_e / (steps + 100)}))
"""


class MissingVenv(SystemExit):
    """A comparison's virtualenv is absent: says how to create it."""

    def __init__(self, name: str, venv: Path):
        super().__init__(
            f"bench compare: no virtualenv for {name} at {venv} (needs {venv}/bin/python).\n"
            f"Create it with:\n  {SETUP[name].format(venv=venv)}\n"
            f"(or pass --{name}-venv PATH" + (", or --without-brian2)" if name == "brian2"
                                              else ")"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-e", type=int, default=300, help="E units (ours: n_i = n_e // 4)")
    parser.add_argument("--steps", type=int, default=20_000, help="timed steps of ours")
    parser.add_argument("--sorn-steps", type=int, default=300, help="timed steps of `sorn`")
    parser.add_argument("--brian2-steps", type=int, default=5_000, help="timed Brian2 steps")
    parser.add_argument("--sorn-venv", type=Path, default=SORN_VENV)
    parser.add_argument("--brian2-venv", type=Path, default=BRIAN2_VENV)
    parser.add_argument("--without-brian2", action="store_true", help="skip Brian2")
    parser.add_argument("--plot", type=Path, help="write a bar chart to this PNG")


def run_in_venv(name: str, venv: Path, script: str, *args: int) -> dict:
    """Run `script` with the venv's Python on one core; its last stdout line is JSON."""
    python = venv / "bin" / "python"
    if not python.exists():
        raise MissingVenv(name, venv)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    with tempfile.TemporaryDirectory() as scratch:  # `sorn` writes sorn.log into its cwd
        done = subprocess.run([str(python), "-c", script, *map(str, args)], cwd=scratch,
                              capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{done.stderr[-2000:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return {**found, "steps_per_sec": round(found["steps"] / found["wall"], 1),
            "cpu_steps_per_sec": round(found["steps"] / found["cpu"], 1)}


def ours(n_e: int, steps: int, backend: str) -> dict:
    args = argparse.Namespace(steps=steps, warmup=min(2_000, steps), n_e=n_e, input="tokens",
                              seed=0, backend=backend)
    return engine.run(args)


def _ratio(a: dict, b: dict, key: str) -> float:
    return round(a[key] / b[key], 1)


def run(args: argparse.Namespace) -> dict:
    for name, venv in (("sorn", args.sorn_venv), ("brian2", args.brian2_venv)):
        if not (name == "brian2" and args.without_brian2) and not (venv / "bin/python").exists():
            raise MissingVenv(name, venv)
    load = load_average()
    runs = {"ours_numba": ours(args.n_e, args.steps, "numba"),
            "ours_numpy": ours(args.n_e, args.steps, "numpy")}
    print("running the PyPI sorn package ...", file=sys.stderr)
    runs["sorn"] = run_in_venv("sorn", args.sorn_venv, SORN_SCRIPT, args.n_e, args.sorn_steps,
                               SORNConfig(n_e=args.n_e, n_i=args.n_e // 4).ee_inputs)
    if not args.without_brian2:
        print("running Brian2 (numpy target) ...", file=sys.stderr)
        runs["brian2_numpy"] = run_in_venv("brian2", args.brian2_venv, BRIAN2_SCRIPT, args.n_e,
                                           args.brian2_steps)
    ratios = {}
    for mine in ("ours_numba", "ours_numpy"):
        for theirs in ("sorn", "brian2_numpy"):
            if theirs in runs:
                ratios[f"{mine}/{theirs}"] = {
                    "wall": _ratio(runs[mine], runs[theirs], "steps_per_sec"),
                    "cpu": _ratio(runs[mine], runs[theirs], "cpu_steps_per_sec")}
    summary = {name: {key: r.get(key) for key in ("neurons_e", "neurons_i", "synapses", "rate_e",
                                                  "steps", "steps_per_sec", "cpu_steps_per_sec")}
               for name, r in runs.items()}
    result = {"runs": summary, "ratios": ratios, "load": load, "load_after": load_average()}
    if args.plot:
        plot(result, args.plot)
    return result


def plot(result: dict, path: Path) -> None:
    names = list(result["runs"])
    with png_figure(path, dpi=100, figsize=(6, 3.5)) as (fig, ax):
        for offset, key, label in ((-0.2, "steps_per_sec", "wall"),
                                   (0.2, "cpu_steps_per_sec", "per CPU-second")):
            ax.bar([i + offset for i in range(len(names))],
                   [result["runs"][name][key] for name in names], width=0.4, label=label)
        ax.set_xticks(range(len(names)), names)
        ax.set(yscale="log", ylabel="steps / s (one core)",
               title=f"plastic networks of ~375 units (load {result['load'][0]})")
        ax.legend(fontsize=8)


def format_report(result: dict) -> str:
    lines = [f"load {result['load']} -> {result['load_after']}"]
    for name, r in result["runs"].items():
        lines.append(f"{name:13} {r['neurons_e']} E + {r['neurons_i']} I, {r['synapses']} E->E: "
                     f"{r['steps_per_sec']:>9.1f} steps/s wall, {r['cpu_steps_per_sec']:>9.1f} "
                     f"CPU ({r['steps']} steps)")
    for name, ratio in result["ratios"].items():
        lines.append(f"{name:26} x{ratio['wall']} wall, x{ratio['cpu']} CPU")
    return "\n".join(lines)
