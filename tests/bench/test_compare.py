"""The comparison harness: clear failure without the other simulators' virtualenvs."""

import argparse

import pytest

from webapp.bench import compare


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    compare.add_arguments(parser)
    return parser.parse_args(argv)


def test_a_missing_sorn_venv_fails_saying_how_to_create_it(tmp_path):
    missing = tmp_path / "no-venv"
    with pytest.raises(SystemExit) as failure:
        compare.run(parse("--sorn-venv", str(missing), "--without-brian2"))
    message = str(failure.value)
    assert str(missing) in message
    assert f"python3.11 -m venv {missing}" in message and "sorn==0.7.4" in message


def test_a_missing_brian2_venv_fails_unless_brian2_is_skipped(tmp_path):
    fake_sorn = tmp_path / "sorn-venv"
    (fake_sorn / "bin").mkdir(parents=True)
    (fake_sorn / "bin" / "python").write_text("")
    with pytest.raises(SystemExit) as failure:
        compare.run(parse("--sorn-venv", str(fake_sorn),
                          "--brian2-venv", str(tmp_path / "none")))
    assert "pip install brian2" in str(failure.value)
    assert "--without-brian2" in str(failure.value)


def test_a_script_runs_in_the_given_python_and_reports_rates(tmp_path):
    import sys

    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    script = ("import json, sys; print('noise'); "
              "print(json.dumps({'steps': int(sys.argv[1]), 'wall': 0.5, 'cpu': 0.25}))")
    found = compare.run_in_venv("sorn", venv, script, 100)
    assert found["steps_per_sec"] == 200.0 and found["cpu_steps_per_sec"] == 400.0


def test_a_failing_script_reports_its_error(tmp_path):
    import sys

    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        compare.run_in_venv("sorn", venv, "1 / 0")
