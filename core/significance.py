"""Seed noise: Welch's t-test, confidence intervals, and the challenge's record rule. Pure, no scipy.

A record must beat the last by at least 0.005 nats with p < 0.01 "that the 0.005-nat
improvement has been achieved". So the rule tests H0: gain <= threshold against
H1: gain > threshold (one-sided Welch, null shifted by the threshold); a plain
gain > 0 at p < 0.01 is not enough. Scores are in bits per byte, so the threshold is
converted with the baseline's own val_bpb / val_loss ratio (tokens per byte over ln 2,
fixed for one tokenizer and validation set): 0.005 nats is ~0.0030 bpb for sp1024
and ~0.0019 bpb for sp8192. Without val_loss the figure the community quotes for
0.005 nats, 0.0023 bpb, stands in (0.46 bpb per nat). With one seed on either side there is no test: None, "n/a".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

RECORD_NATS = 0.005
RECORD_ALPHA = 0.01
FALLBACK_BPB_PER_NAT = 0.0023 / RECORD_NATS
MIN_TEST_SEEDS = 2  # a sample variance needs two values


class Sample(msgspec.Struct, frozen=True):
    """A seed group's sufficient statistics: n, mean and sample standard deviation (n - 1)."""

    n: int
    mean: float
    std: float
    bpb_per_nat: float | None = None  # val_bpb / val_loss of the same runs, when they report val_loss

    @classmethod
    def of(cls, values: Sequence[float], losses: Sequence[float] | None = None) -> Sample:
        n = len(values)
        mean = math.fsum(values) / n
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
        ratio = None
        if losses and len(losses) == n and math.fsum(losses) > 0:
            ratio = mean / (math.fsum(losses) / n)
        return cls(n, mean, std, ratio)

    @property
    def testable(self) -> bool:
        return self.n >= MIN_TEST_SEEDS


class RecordRule(msgspec.Struct, frozen=True, kw_only=True):
    min_gain_nats: float = RECORD_NATS
    alpha: float = RECORD_ALPHA
    fallback_bpb_per_nat: float = FALLBACK_BPB_PER_NAT  # when the baseline reports no val_loss

    def threshold_bpb(self, baseline: Sample) -> float:
        return self.min_gain_nats * (baseline.bpb_per_nat or self.fallback_bpb_per_nat)


CHALLENGE_RULE = RecordRule()


class Comparison(msgspec.Struct, frozen=True, kw_only=True):
    """A (candidate) against b (baseline), in val_bpb: lower is better, so a gain is b.mean - a.mean."""

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    diff: float  # a.mean - b.mean: negative when a is better
    level: float
    ci_low: float | None = None  # the confidence interval of diff; None without a test
    ci_high: float | None = None
    t: float | None = None
    df: float | None = None
    p_value: float | None = None  # two-sided, H0: equal means
    threshold_bpb: float
    p_record: float | None = None  # one-sided, H0: gain <= threshold_bpb
    significant: bool | None = None  # the record rule: p_record < alpha; None when untestable

    @property
    def gain(self) -> float:
        return -self.diff


def _beta_cf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        even = m * (b - m) * x / ((qam + m2) * (a + m2))
        odd = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        for numerator in (even, odd):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):  # the fraction converges fast on this side; use symmetry on the other
        return front * _beta_cf(a, b, x) / a
    return 1.0 - front * _beta_cf(b, a, 1.0 - x) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with df degrees of freedom (df may be fractional, as Welch's is)."""
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return tail if t >= 0 else 1.0 - tail


def t_cdf(t: float, df: float) -> float:
    return 1.0 - t_sf(t, df)


def t_quantile(p: float, df: float) -> float:
    """The t with t_cdf(t, df) == p, by bisection (the CDF is monotone)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile: p must be in (0, 1), got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, high * 2.0
    for _ in range(200):
        mid = (low + high) / 2.0
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
        if high - low <= 1e-13 * max(1.0, high):
            break
    return (low + high) / 2.0


def _welch(a: Sample, b: Sample) -> tuple[float, float]:
    """(standard error of a.mean - b.mean, Welch-Satterthwaite degrees of freedom); both samples testable."""
    va, vb = a.std ** 2 / a.n, b.std ** 2 / b.n
    se = math.sqrt(va + vb)
    if se == 0.0:  # no spread on either side (deterministic runs): the difference is exact
        return 0.0, float(a.n + b.n - 2)
    return se, (va + vb) ** 2 / (va ** 2 / (a.n - 1) + vb ** 2 / (b.n - 1))


def record_test(a: Sample, b: Sample, rule: RecordRule = CHALLENGE_RULE) -> tuple[float | None, bool | None]:
    """(p, significant) for "a beats b by the rule's threshold"; (None, None) when a side has one seed."""
    if not (a.testable and b.testable):
        return None, None
    se, df = _welch(a, b)
    margin = (b.mean - a.mean) - rule.threshold_bpb(b)  # how far the gain clears the threshold
    p = (0.0 if margin > 0 else 1.0) if se == 0.0 else t_sf(margin / se, df)
    return p, p < rule.alpha


def compare(a: Sample, b: Sample, rule: RecordRule = CHALLENGE_RULE, level: float = 0.95) -> Comparison:
    """Welch's test of a against b: the CI of a.mean - b.mean, its two-sided p, and the record rule."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    diff = a.mean - b.mean
    base = Comparison(n_a=a.n, n_b=b.n, mean_a=a.mean, mean_b=b.mean, diff=diff, level=level,
                      threshold_bpb=rule.threshold_bpb(b))
    if not (a.testable and b.testable):
        return base
    se, df = _welch(a, b)
    p_record, significant = record_test(a, b, rule)
    if se == 0.0:
        t, p_value, half = (math.copysign(math.inf, diff), 0.0, 0.0) if diff else (0.0, 1.0, 0.0)
    else:
        t = diff / se
        p_value, half = min(1.0, 2.0 * t_sf(abs(t), df)), t_quantile((1.0 + level) / 2.0, df) * se
    return msgspec.structs.replace(base, ci_low=diff - half, ci_high=diff + half, t=t, df=df, p_value=p_value,
                                   p_record=p_record, significant=significant)
