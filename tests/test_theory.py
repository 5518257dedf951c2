"""Tests for slt.theory: closed-form learning coefficients."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slt.theory import dln, normal_crossing, regular, rrr, tanh_one_hidden

# ---------------------------------------------------------------------------
# regular
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("d", [0, 1, 2, 7, 1000])
def test_regular(d):
    lam, m = regular(d)
    assert lam == Fraction(d, 2)
    assert isinstance(lam, Fraction)
    assert m == 1
    assert type(m) is int


# ---------------------------------------------------------------------------
# normal crossing
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("powers", "prior_powers", "lam", "m"),
    [
        ([1], None, Fraction(1, 2), 1),
        ([2], None, Fraction(1, 4), 1),
        ([1, 1], None, Fraction(1, 2), 2),  # K = x^2 y^2
        ([1, 2], None, Fraction(1, 4), 1),
        ([2, 2, 1], None, Fraction(1, 4), 2),
        ([3, 3, 3], None, Fraction(1, 6), 3),
        ([0, 1], None, Fraction(1, 2), 1),  # k = 0 coordinate is skipped
        ([0, 0, 2, 0], None, Fraction(1, 4), 1),
        ([1, 2], [2, 0], Fraction(1, 4), 1),
        ([1, 2], [0, 1], Fraction(1, 2), 2),  # (0+1)/2 == (1+1)/4
        ([1, 1], [1, 0], Fraction(1, 2), 1),
        ([1, 1], [Fraction(-1, 2), 0], Fraction(1, 4), 1),
        ([0, 1], [-Fraction(9, 10), 3], Fraction(2, 1), 1),  # h of k=0 ignored
        ((2, 1, 1), (1, 0, 0), Fraction(1, 2), 3),
    ],
)
def test_normal_crossing_examples(powers, prior_powers, lam, m):
    got = normal_crossing(powers, prior_powers)
    assert got == (lam, m)
    assert isinstance(got[0], Fraction)
    assert type(got[1]) is int


def test_normal_crossing_flat_prior_equals_zero_prior():
    for ks in itertools.product(range(4), repeat=3):
        if any(ks):
            assert normal_crossing(ks) == normal_crossing(ks, [0, 0, 0])
            lam, _ = normal_crossing(ks)
            assert lam == Fraction(1, 2 * max(ks))


# ---------------------------------------------------------------------------
# one-hidden-layer tanh
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("H", "lam"),
    [
        (1, Fraction(1, 2)),
        (2, Fraction(2, 3)),
        (3, Fraction(5, 6)),
        (4, Fraction(1)),
        (5, Fraction(11, 10)),
    ],
)
def test_tanh_one_hidden_examples(H, lam):
    got_lam, m = tanh_one_hidden(H)
    assert got_lam == lam
    assert isinstance(got_lam, Fraction)
    assert m == 1


def test_tanh_one_hidden_bounds():
    # The model has d = 2H parameters (a_h, b_h), so lambda <= d/2 = H.
    prev = Fraction(0)
    for H in range(1, 200):
        lam, _ = tanh_one_hidden(H)
        assert 0 < lam <= H
        assert lam > prev  # strictly increasing in H
        prev = lam


# ---------------------------------------------------------------------------
# reduced-rank regression
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("M", "H", "N", "r", "lam", "m"),
    [
        (5, 3, 5, 0, Fraction(13, 2), 2),  # M+H+N+r odd
        (5, 4, 5, 0, Fraction(8), 1),
        (4, 3, 8, 0, Fraction(6), 1),  # M + H < N + r branch
        (8, 3, 4, 0, Fraction(6), 1),  # N + H < M + r branch
        (1, 5, 1, 0, Fraction(1, 2), 1),  # M + N < H + r branch
        (2, 2, 2, 2, Fraction(2), 1),  # full rank: regular in the quotient
        (1, 1, 1, 0, Fraction(1, 2), 2),
    ],
)
def test_rrr_examples(M, H, N, r, lam, m):
    assert rrr(M, H, N, r) == (lam, m)


def test_rrr_symmetric_in_input_output():
    for M, H, N in itertools.product(range(1, 8), repeat=3):
        for r in range(min(M, H, N) + 1):
            assert rrr(M, H, N, r) == rrr(N, H, M, r)


# ---------------------------------------------------------------------------
# deep linear network
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("widths", "rank", "lam", "m"),
    [
        ((3, 4, 5, 6), 1, Fraction(7), 2),
        ((10, 10, 10, 10), 0, Fraction(67, 2), 3),
        ((2, 2, 2, 2, 2), 1, Fraction(2), 4),
        ((1, 1, 1), 0, Fraction(1, 2), 2),
        ((10, 5, 10), 2, Fraction(29), 2),
        ((10, 10, 10), 5, Fraction(47), 2),
        ((100, 100, 100), 0, Fraction(3750), 1),
    ],
)
def test_dln_examples(widths, rank, lam, m):
    got = dln(widths, rank)
    assert got == (lam, m)
    assert isinstance(got[0], Fraction)
    assert type(got[1]) is int


def test_dln_accepts_list_tuple_and_iterable():
    assert dln([3, 4, 5, 6], 1) == dln((3, 4, 5, 6), 1) == dln(iter([3, 4, 5, 6]), 1)


@pytest.mark.parametrize(("h0", "h1"), [(1, 1), (3, 5), (7, 2)])
def test_dln_single_layer_is_regular(h0, h1):
    for r in range(min(h0, h1) + 1):
        assert dln([h0, h1], r) == regular(h0 * h1)


def test_dln_matches_rrr_exhaustively():
    count = 0
    for M, H, N in itertools.product(range(1, 8), repeat=3):
        for r in range(min(M, H, N) + 1):
            assert dln([M, H, N], r) == rrr(M, H, N, r), (M, H, N, r)
            count += 1
    assert count > 500


def _num_params(widths):
    return sum(a * b for a, b in itertools.pairwise(widths))


def test_dln_bounds_and_symmetry_exhaustive_small():
    for L in range(1, 5):
        for widths in itertools.product(range(1, 6), repeat=L + 1):
            d = _num_params(widths)
            for r in range(min(widths) + 1):
                lam, m = dln(widths, r)
                assert 0 < lam <= Fraction(d, 2), (widths, r, lam)
                assert m >= 1
                assert (lam, m) == dln(widths[::-1], r)


widths_strategy = st.lists(st.integers(1, 12), min_size=3, max_size=7)


@settings(max_examples=400, deadline=None)
@given(widths=widths_strategy, data=st.data())
def test_dln_reversal_symmetry_and_bounds(widths, data):
    r = data.draw(st.integers(0, min(widths)), label="rank")
    lam, m = dln(widths, r)
    assert (lam, m) == dln(list(reversed(widths)), r)
    assert 0 < lam <= Fraction(_num_params(widths), 2)
    assert 1 <= m


@settings(max_examples=200, deadline=None)
@given(widths=widths_strategy, data=st.data())
def test_dln_layer_insertion_stays_within_bound(widths, data):
    # Duplicating a width (inserting a layer) keeps the formula well defined
    # (an admissible subset exists) and within the new d/2 bound.
    r = data.draw(st.integers(0, min(widths)), label="rank")
    pos = data.draw(st.integers(1, len(widths) - 1), label="pos")
    w2 = [*widths[:pos], widths[pos], *widths[pos:]]
    lam, _ = dln(w2, r)
    assert 0 < lam <= Fraction(_num_params(w2), 2)


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("d", [-1, 1.0, True, "3", None])
def test_regular_validation(d):
    with pytest.raises(ValueError, match="d must be"):
        regular(d)


@pytest.mark.parametrize(
    ("powers", "prior_powers", "match"),
    [
        ([], None, "powers must have at least 1"),
        ([0, 0], None, "powers must contain at least one positive"),
        ([1, -1], None, "powers must contain ints >= 0"),
        ([1, 1.5], None, "powers must contain ints >= 0"),
        ([1, True], None, "powers must contain ints >= 0"),
        (5, None, "powers must be a sequence"),
        ([1, 1], [0], "prior_powers must have the same length"),
        ([1, 1], [0, -1], "prior_powers must contain values > -1"),
        ([1, 1], [0, -2], "prior_powers must contain values > -1"),
        ([1, 1], [0, 0.5], "prior_powers must contain ints or Fractions"),
        ([1, 1], [0, False], "prior_powers must contain ints or Fractions"),
    ],
)
def test_normal_crossing_validation(powers, prior_powers, match):
    with pytest.raises(ValueError, match=match):
        normal_crossing(powers, prior_powers)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0, 1, 1, 0), "M must be"),
        ((1, 0, 1, 0), "H must be"),
        ((1, 1, 0, 0), "N must be"),
        ((1.0, 1, 1, 0), "M must be"),
        ((True, 1, 1, 0), "M must be"),
        ((1, 1, 1, -1), "r must be"),
        ((1, 1, 1, True), "r must be"),
        ((3, 2, 4, 3), r"r must satisfy 0 <= r <= min\(M, H, N\) = 2"),
    ],
)
def test_rrr_validation(args, match):
    with pytest.raises(ValueError, match=match):
        rrr(*args)


@pytest.mark.parametrize(
    ("widths", "rank", "match"),
    [
        ([3], 0, "widths must have at least 2"),
        ([], 0, "widths must have at least 2"),
        ([3, 0, 2], 0, "widths must contain ints >= 1"),
        ([3, -2, 2], 0, "widths must contain ints >= 1"),
        ([3, 2.0, 2], 0, "widths must contain ints >= 1"),
        ([3, True, 2], 0, "widths must contain ints >= 1"),
        (7, 0, "widths must be a sequence"),
        ([3, 4, 5], -1, "rank must be"),
        ([3, 4, 5], 1.0, "rank must be"),
        ([3, 4, 5], False, "rank must be"),
        ([3, 4, 5], 4, r"rank must satisfy 0 <= rank <= min\(widths\) = 3"),
    ],
)
def test_dln_validation(widths, rank, match):
    with pytest.raises(ValueError, match=match):
        dln(widths, rank)


@pytest.mark.parametrize("H", [0, -3, 2.0, True, None])
def test_tanh_one_hidden_validation(H):
    with pytest.raises(ValueError, match="H must be"):
        tanh_one_hidden(H)
