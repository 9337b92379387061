"""The configuration: every parameter exposed, validated, and round-tripped."""

import dataclasses

import pytest

from webapp.sorn import SORNConfig


def test_every_rule_has_a_switch_and_the_defaults_are_the_documented_ones():
    cfg = SORNConfig()
    assert (cfg.n_e, cfg.n_i, cfg.ee_connectivity, cfg.h_ip) == (300, 75, 0.15, 0.1)
    assert cfg.noise_distribution == "normal"
    rules = ("stdp", "istdp", "normalization", "ip", "structural")
    assert all(getattr(cfg, rule) for rule in rules)
    assert cfg.ee_inputs == 45
    assert SORNConfig(ee_inputs_per_unit=10).ee_inputs == 10


def test_a_config_round_trips_through_a_dict_and_refuses_unknown_keys():
    cfg = SORNConfig(n_e=200, n_i=40, ee_inputs_per_unit=10, eta_stdp=0.001, structural=False,
                     noise_distribution="uniform")
    assert SORNConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        SORNConfig.from_dict(cfg.to_dict() | {"unknown": 1})
    with pytest.raises(ValueError):
        SORNConfig.from_dict({"n_e": 10})


def test_a_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SORNConfig().n_e = 10  # type: ignore[misc]


@pytest.mark.parametrize(
    "field, value",
    [("h_ip", 0.0), ("p_add", 1.5), ("noise_sigma", float("nan")), ("n_i", -1),
     ("ee_inputs_per_unit", 300), ("input_gain", float("inf")),
     ("noise_distribution", "laplace")],
)
def test_impossible_values_are_refused(field, value):
    with pytest.raises(ValueError):
        SORNConfig(**{field: value})
