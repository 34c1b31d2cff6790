"""Numeric command-line options out of range are rejected by argparse, before any work starts."""

from __future__ import annotations

import argparse
import re

import pytest

from slmshift.cli import fraction, int_at_least, main, positive_float, positive_fraction


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--requests", "0"], "--requests: invalid value '0': use a whole number of 50 or more"),
        (["demo", "--requests", "-5"], "--requests: invalid value '-5': use a whole number of 50 or more"),
        (["demo", "--holdout", "0"], "--holdout: invalid value '0': use a whole number of 10 or more"),
        (["demo", "--seed", "-1"], "--seed: invalid value '-1': use a whole number of 0 or more"),
        (["refresh", "--seed", "-1"], "--seed: invalid value '-1': use a whole number of 0 or more"),
        (["train", "--epochs", "-1"], "--epochs: invalid value '-1': use a number greater than 0"),
        (["train", "--threads", "0"], "--threads: invalid value '0': use a whole number of 1 or more"),
        (["train", "--compacts", "0"], "--compacts: invalid value '0': use a whole number of 1 or more"),
        (["train", "--target-agreement", "7"], r"--target-agreement: invalid value '7': use a number in \(0, 1\]"),
        (["eval", "--target-agreement", "0"], r"--target-agreement: invalid value '0': use a number in \(0, 1\]"),
        (["eval", "--min-ratio", "1.5"], r"--min-ratio: invalid value '1.5': use a number in \(0, 1\]"),
        (["eval", "--teacher-input-price", "-0.1"], "--teacher-input-price: invalid value '-0.1': use a number of 0 or more"),
        (["eval", "--latency-sample", "0"], "--latency-sample: invalid value '0': use a whole number of 1 or more"),
        (["select", "--top", "-1"], "--top: invalid value '-1': use a whole number of 1 or more"),
        (["select", "--memory-gib", "0"], "--memory-gib: invalid value '0': use a number greater than 0"),
        (["plan", "write", "--canary-share", "1.5"], r"--canary-share: invalid value '1.5': use a number in \[0, 1\]"),
        (["plan", "write", "--min-confidence", "nan"], r"--min-confidence: invalid value 'nan': use a number in \[0, 1\]"),
        (["analyze", "--min-cluster-size", "1"], "--min-cluster-size: invalid value '1': use a whole number of 2 or more"),
        (["analyze", "--traffic-days", "0"], "--traffic-days: invalid value '0': use a number greater than 0"),
        (["traces", "list", "--limit", "-1"], "--limit: invalid value '-1': use a whole number of 0 or more"),
        (["train", "--threads", "two"], "--threads: invalid value 'two': use a whole number of 1 or more"),
    ],
)
def test_out_of_range_option_exits_with_usage_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)

    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"slmshift {' '.join(argv[:-2])}: error: argument" in err
    assert re.search(message, err)
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("parse", "text", "expected"),
    [
        (int_at_least(1), "3", 3),
        (fraction, "0", 0.0),
        (fraction, "1", 1.0),
        (positive_fraction, "1", 1.0),
        (positive_float, "0.5", 0.5),
    ],
)
def test_numeric_types_accept_bounds(parse, text: str, expected: float) -> None:
    assert parse(text) == expected


def test_positive_fraction_rejects_zero() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"invalid value '0': use a number in \(0, 1\]"):
        positive_fraction("0")
