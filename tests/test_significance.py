"""The seed-noise statistics against values known in closed form, from tables and textbooks, or worked by hand."""

from __future__ import annotations

import math

import pytest

from golfq.core.significance import (
    RecordRule,
    Sample,
    betainc,
    compare,
    record_test,
    t_cdf,
    t_quantile,
    t_sf,
)


def cdf_df4(t: float) -> float:
    """Student's t CDF with 4 degrees of freedom in closed form."""
    u = t * t / 4
    return 0.5 + 3 / 8 * t / math.sqrt(1 + u) * (1 - t * t / (12 * (1 + u)))


@pytest.mark.parametrize("t", [-50.0, -3.0, -1.0, -0.2, 0.0, 0.3, 1.0, 2.5, 12.0, 400.0])
def test_t_cdf_matches_the_closed_forms_for_one_two_and_four_degrees_of_freedom(t):
    assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)  # Cauchy
    assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)
    assert t_cdf(t, 4) == pytest.approx(cdf_df4(t), abs=1e-12)
    assert t_sf(t, 3.7) == pytest.approx(t_cdf(-t, 3.7), abs=1e-12)  # symmetry, at a fractional df


def test_t_cdf_tends_to_the_normal_and_handles_infinities():
    assert t_cdf(1.959963984540054, 1e7) == pytest.approx(0.975, abs=1e-6)
    assert t_sf(math.inf, 3) == 0.0 and t_sf(-math.inf, 3) == 1.0


def test_betainc_edges_and_a_symmetric_value():
    assert betainc(2, 3, 0.0) == 0.0 and betainc(2, 3, 1.0) == 1.0
    assert betainc(2.5, 2.5, 0.5) == pytest.approx(0.5, abs=1e-14)
    assert betainc(1, 1, 0.3) == pytest.approx(0.3, abs=1e-14)  # the uniform distribution
    assert betainc(2, 1, 0.6) == pytest.approx(0.36, abs=1e-14)  # I_x(2, 1) = x^2


@pytest.mark.parametrize(("p", "df", "table"), [
    (0.975, 10, 2.228), (0.995, 1, 63.657), (0.95, 5, 2.015), (0.99, 4, 3.747), (0.975, 2, 4.303), (0.9, 30, 1.310),
])
def test_t_quantile_matches_the_printed_t_table(p, df, table):
    assert t_quantile(p, df) == pytest.approx(table, abs=5e-4)
    assert t_quantile(1 - p, df) == pytest.approx(-table, abs=5e-4)
    assert t_cdf(t_quantile(p, df), df) == pytest.approx(p, abs=1e-12)


def test_t_quantile_with_two_degrees_of_freedom_is_exact():
    # Solving 0.5 + t / (2 sqrt(2 + t^2)) = p gives t = u sqrt(2 / (1 - u^2)), u = 2p - 1.
    assert t_quantile(0.975, 2) == pytest.approx(0.95 * math.sqrt(2 / (1 - 0.95 ** 2)), rel=1e-12)
    assert t_quantile(0.5, 7) == 0.0
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)


# Wikipedia, "Welch's t-test", Examples: three pairs of samples with Welch's t, df and two-sided p as published.
A1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
A2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
B1 = [17.2, 20.9, 22.6, 18.1, 21.7, 21.4, 23.5, 24.2, 14.7, 21.8]
B2 = [21.5, 22.8, 21.0, 23.0, 21.6, 23.6, 22.5, 20.7, 23.4, 21.8, 20.7, 21.7, 21.5, 22.5, 23.6, 21.5, 22.5, 23.5,
      21.5, 21.8]
C1 = [19.8, 20.4, 19.6, 17.8, 18.5, 18.9, 18.3, 18.9, 19.5, 22.0]
C2 = [28.2, 26.6, 20.1, 23.3, 25.2, 22.1, 17.7, 27.6, 20.6, 13.7, 23.2, 17.5, 20.6, 18.0, 23.9, 21.6, 24.3, 20.4,
      23.9, 13.3]


@pytest.mark.parametrize(("a", "b", "t", "df", "p"), [
    (A1, A2, -2.46, 25.0, 0.021), (B1, B2, -1.57, 9.9, 0.149), (C1, C2, -2.22, 24.5, 0.036),
])
def test_welch_matches_the_published_examples(a, b, t, df, p):
    c = compare(Sample.of(a), Sample.of(b))  # to the printed precision (one published t is truncated, not rounded)
    assert c.t == pytest.approx(t, abs=0.01) and c.df == pytest.approx(df, abs=0.06)
    assert c.p_value == pytest.approx(p, abs=0.0006)


def test_welch_from_summary_statistics():
    """n=20, mean 100, s 15 against n=20, mean 95, s 20: se = sqrt(225/20 + 400/20) = sqrt(31.25) = 5.5902,
    t = 5 / 5.5902 = 0.8944, df = 31.25^2 / ((11.25^2 + 20^2) / 19) = 976.5625 / 27.7138 = 35.24."""
    c = compare(Sample(20, 100.0, 15.0), Sample(20, 95.0, 20.0))
    assert c.t == pytest.approx(0.8944, abs=1e-4) and c.df == pytest.approx(35.24, abs=5e-3)
    assert c.p_value > 0.3


def test_two_seeds_each_worked_by_hand():
    """A = (1.00, 1.02), B = (1.05, 1.07): means 1.01 and 1.06, both variances 0.0002.

    se^2 = 0.0002/2 + 0.0002/2 = 0.0002, se = 0.0141421; diff = -0.05; t = -0.05/0.0141421 = -3.53553.
    df = 0.0002^2 / (2 * 0.0001^2 / 1) = 2. With 2 df, P(|T| > |t|) = 1 - |t| / sqrt(2 + t^2)
    = 1 - 3.53553 / 3.80789 = 0.071523. The 95% quantile is t = 0.95 sqrt(2 / 0.0975) = 4.302653, so the CI
    is -0.05 -+ 0.060849 = [-0.110849, 0.010849]. The record rule (no val_loss: 0.0023 bpb):
    t = (0.05 - 0.0023) / 0.0141421 = 3.37290, p = (1 - 3.37290 / sqrt(2 + 11.37645)) / 2 = 0.038892,
    not below 0.01: a gain of 0.05 bpb over two seeds is not yet a record.
    """
    c = compare(Sample.of([1.00, 1.02]), Sample.of([1.05, 1.07]))
    assert c.diff == pytest.approx(-0.05) and c.gain == pytest.approx(0.05)
    assert c.t == pytest.approx(-3.53553, abs=1e-5) and c.df == pytest.approx(2.0)
    assert c.p_value == pytest.approx(0.071523, abs=1e-6)
    assert (c.ci_low, c.ci_high) == (pytest.approx(-0.110849, abs=1e-6), pytest.approx(0.010849, abs=1e-6))
    assert c.threshold_bpb == pytest.approx(0.0023)
    assert c.p_record == pytest.approx(0.038892, abs=1e-6) and c.significant is False


def test_the_record_rule_with_three_seeds_at_the_records_spread():
    """The current record's 3-seed std is 0.0009 bpb. A candidate 0.004 bpb better, same spread, 3 seeds:
    se = sqrt(2 * 0.0009^2 / 3) = 0.000734847, df = 4, t = (0.004 - 0.0023) / se = 2.31341, and
    p = 1 - F4(2.31341) = 0.040863 with F4 the 4-df CDF in closed form: not significant. At 0.007 bpb
    better, t = 0.0047 / se = 6.39589 and p = 1 - F4(6.39589) = 0.001534: significant."""
    record = Sample(3, 1.0611, 0.0009)
    p, significant = record_test(Sample(3, 1.0571, 0.0009), record)
    assert p == pytest.approx(1 - cdf_df4(0.0017 / math.sqrt(2 * 0.0009 ** 2 / 3)), abs=1e-12)
    assert p == pytest.approx(0.040863, abs=1e-6) and significant is False
    p, significant = record_test(Sample(3, 1.0541, 0.0009), record)
    assert p == pytest.approx(0.001534, abs=1e-6) and significant is True


def test_the_threshold_follows_the_baselines_nats_per_bpb():
    """The baseline log: val_loss 2.07269931, val_bpb 1.22436570, so 0.005 nats = 0.005 * 1.2244 / 2.0727
    = 0.0029536 bpb (sp1024); the rule can be made stricter or looser."""
    baseline = Sample.of([1.22436570, 1.22436570], [2.07269931, 2.07269931])
    assert baseline.bpb_per_nat == pytest.approx(1.22436570 / 2.07269931)
    assert RecordRule().threshold_bpb(baseline) == pytest.approx(0.0029536, abs=1e-7)
    assert RecordRule(min_gain_nats=0.01).threshold_bpb(Sample(3, 1.0, 0.001)) == pytest.approx(0.0046)


def test_one_seed_has_no_test_and_zero_spread_is_exact():
    c = compare(Sample.of([1.0]), Sample.of([1.1, 1.2]))
    assert (c.t, c.p_value, c.ci_low, c.p_record, c.significant) == (None, None, None, None, None)
    assert c.diff == pytest.approx(-0.15)
    exact = compare(Sample.of([1.0, 1.0]), Sample.of([1.01, 1.01]))
    assert exact.p_value == 0.0 and exact.significant is True and exact.ci_low == exact.ci_high == pytest.approx(-0.01)
    tie = compare(Sample.of([1.0, 1.0]), Sample.of([1.0, 1.0]))
    assert tie.p_value == 1.0 and tie.significant is False
    with pytest.raises(ValueError):
        compare(Sample.of([1.0, 1.1]), Sample.of([1.0, 1.2]), level=1.0)
