"""Engine speed: steps per second of one SORN with all five plasticity rules on.

The network is driven by token input every step (each step one token of a seeded
Zipf-distributed vocabulary, through TokenEncoder), or runs spontaneously with
`--input none`. After a warm-up the timed steps run with `record=False`, the way the
app learns. Reports wall-clock and CPU-time rates (the VM is shared, so CPU time is the
steadier number), the bytes of the network's arrays and the size of its saved file,
and which backend ran (numpy, or the numba kernel of the `fast` extra).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from webapp.sorn import SORN, SORNConfig, TokenEncoder
from webapp.sorn.network import BACKENDS

CHUNK = 1000  # steps per progress-bar update
VOCABULARY = 2000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=20_000, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2_000, help="untimed steps first")
    parser.add_argument("--n-e", type=int, default=300, help="E units (n_i = n_e // 4)")
    parser.add_argument("--input", choices=("tokens", "none"), default="tokens")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--backend", choices=BACKENDS, default="auto", help="auto: numba when installed"
    )


def token_inputs(n_e: int, steps: int, seed: int) -> list[np.ndarray]:
    """One token per step, drawn from a Zipf-like vocabulary, encoded to E units."""
    rng = np.random.default_rng(seed)
    encoder = TokenEncoder(n_e=n_e, units_per_token=10, seed=seed)
    ranks = rng.zipf(1.3, size=steps) % VOCABULARY
    return encoder.inputs(f"word{rank}" for rank in ranks)


def run(args: argparse.Namespace) -> dict:
    config = SORNConfig(n_e=args.n_e, n_i=args.n_e // 4)
    net = SORN(config, seed=args.seed, backend=args.backend)
    total = args.warmup + args.steps
    inputs = token_inputs(args.n_e, total, args.seed) if args.input == "tokens" else [None] * total
    net.run(inputs[: args.warmup], record=False)

    wall = cpu = 0.0
    with tqdm(total=args.steps, desc="engine", unit="step", leave=False) as progress:
        for start in range(args.warmup, total, CHUNK):
            chunk = inputs[start : min(start + CHUNK, total)]
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            net.run(chunk, record=False)
            wall += time.perf_counter() - wall_start
            cpu += time.process_time() - cpu_start
            progress.update(len(chunk))

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "network.npz"
        net.save(path)
        file_bytes = path.stat().st_size
    stats = net.stats()
    return {
        "neurons_e": config.n_e,
        "neurons_i": config.n_i,
        "synapses": stats["synapses"],
        "steps": args.steps,
        "steps_per_sec": round(args.steps / wall, 1),
        "cpu_steps_per_sec": round(args.steps / cpu, 1) if cpu > 0 else None,
        "input": args.input,
        "backend": net.backend,
        "rules": ["stdp", "istdp", "normalization", "ip", "structural"],
        "rate_e": round(stats["rate_e"], 4),
        "rate_i": round(stats["rate_i"], 4),
        "ram_bytes": net.nbytes(),
        "file_bytes": file_bytes,
    }


def format_report(result: dict) -> str:
    return (
        f"SORN {result['neurons_e']} E + {result['neurons_i']} I, {result['synapses']} E->E "
        f"synapses, input {result['input']}, {result['backend']}: "
        f"{result['steps_per_sec']:.0f} steps/s wall, "
        f"{result['cpu_steps_per_sec']:.0f} steps/s CPU over {result['steps']} steps; "
        f"rate_e {result['rate_e']}, RAM {result['ram_bytes'] / 1e6:.2f} MB, "
        f"file {result['file_bytes'] / 1e6:.2f} MB"
    )
