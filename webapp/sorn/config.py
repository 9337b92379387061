"""Every parameter of the SORN in one frozen, validated dataclass.

Matrix names follow the equations: W_XY carries activity *from* population Y *to*
population X, so `ei_connectivity` is about I->E synapses and `ie_connectivity` about
E->I synapses. Defaults are those of Zheng, Dimitrakakis & Triesch (2013) at the size the
app uses (300 E + 75 I, 15 % E->E); docs/MODEL.md lists them with their sources.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

NOISE_DISTRIBUTIONS = ("normal", "uniform")


@dataclass(frozen=True)
class SORNConfig:
    """Sizes, connectivity, learning rates and on/off switches of the five rules."""

    n_e: int = 300
    n_i: int = 75
    # E->E: fraction of the other E units each E unit receives from, or an exact count
    # (`ee_inputs_per_unit` wins when given; Lazar 2009 uses about 10).
    ee_connectivity: float = 0.15
    ee_inputs_per_unit: int | None = None
    ei_connectivity: float = 0.2  # I->E: fraction of I units each E unit receives from
    ie_connectivity: float = 1.0  # E->I: fraction of E units each I unit receives from
    eta_stdp: float = 0.004
    eta_istdp: float = 0.001
    eta_ip: float = 0.01
    h_ip: float = 0.1  # target firing rate of the E units
    te_max: float = 1.0  # initial E thresholds ~ U(0, te_max)
    ti_max: float = 0.5  # I thresholds ~ U(0, ti_max) (fixed)
    noise_sigma: float = math.sqrt(0.05)  # scale σ of the noise on each E unit
    noise_sigma_i: float = 0.0  # its scale on each I unit (the lab code uses noise_sigma)
    # ξ = σ·N(0, 1) ("normal": σ is the std; Zheng 2013, Hartmann) or σ·U[0, 1) ("uniform":
    # mean σ/2, std σ/√12; the `sigma` of the lab's SORN_V2 code), for E and I units alike.
    noise_distribution: str = "normal"
    input_gain: float = 1.0  # u_i for the E units driven in a step
    # I units see the new E state, y(t+1) = Θ(W_IE x(t+1) − T_I), as in the Triesch lab's
    # counting-task code (Hartmann's `fast_inhibit`); off: Lazar's y(t+1) from x(t).
    fast_inhibition: bool = False
    p_add: float = 0.1  # probability per step that one new E->E synapse appears
    w_new: float = 0.001  # its weight
    prune_threshold: float = 1e-10  # E->E synapses at or below this weight are removed
    istdp_floor: float = 0.001  # I->E weights never fall below this
    stdp: bool = True
    istdp: bool = True
    normalization: bool = True
    ip: bool = True
    structural: bool = True

    def __post_init__(self) -> None:
        problems = []
        if not (isinstance(self.n_e, int) and 2 <= self.n_e <= 65535):
            problems.append("n_e must be an int in [2, 65535]")
        if not (isinstance(self.n_i, int) and 0 <= self.n_i <= 65535):
            problems.append("n_i must be an int in [0, 65535]")
        if self.ee_inputs_per_unit is not None and not (
            isinstance(self.ee_inputs_per_unit, int)
            and 0 <= self.ee_inputs_per_unit <= max(self.n_e - 1, 0)
        ):
            problems.append("ee_inputs_per_unit must be None or an int in [0, n_e - 1]")
        for name in ("ee_connectivity", "ei_connectivity", "ie_connectivity", "p_add", "h_ip"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                problems.append(f"{name} must lie in [0, 1], got {value}")
        if not 0.0 < self.h_ip <= 1.0:
            problems.append("h_ip must be > 0")
        for name in (
            "eta_stdp", "eta_istdp", "eta_ip", "te_max", "ti_max", "noise_sigma",
            "noise_sigma_i", "w_new", "prune_threshold", "istdp_floor",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                problems.append(f"{name} must be finite and >= 0, got {value}")
        if self.noise_distribution not in NOISE_DISTRIBUTIONS:
            problems.append(f"noise_distribution must be one of {NOISE_DISTRIBUTIONS}")
        if not isinstance(self.fast_inhibition, bool):
            problems.append("fast_inhibition must be a bool")
        if not math.isfinite(self.input_gain):
            problems.append("input_gain must be finite")
        if problems:
            raise ValueError("invalid SORNConfig: " + "; ".join(problems))

    @property
    def ee_inputs(self) -> int:
        """E->E synapses each E unit starts with."""
        if self.ee_inputs_per_unit is not None:
            return self.ee_inputs_per_unit
        return round(self.ee_connectivity * (self.n_e - 1))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SORNConfig:
        """The inverse of to_dict; unknown or missing keys are an error."""
        names = {field.name for field in dataclasses.fields(cls)}
        if set(data) != names:
            raise ValueError(
                f"config keys differ: unknown {sorted(set(data) - names)}, "
                f"missing {sorted(names - set(data))}"
            )
        return cls(**data)
