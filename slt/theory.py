"""Learning coefficients known in closed form.

Each function returns a pair ``(lam, multiplicity)``: the learning coefficient
(real log canonical threshold) :math:`\\lambda` as an exact
:class:`fractions.Fraction`, and its multiplicity :math:`m` as an ``int``. They
enter the asymptotic expansion of the Bayesian free energy (Watanabe, 2009)

.. math::

    F_n = n L_n(w_0) + \\lambda \\log n - (m - 1) \\log \\log n + O_p(1),

and serve as ground truth for estimators of the local learning coefficient
(Lau et al., arXiv 2308.12108).

All functions are pure Python with exact rational arithmetic; none of them
imports JAX. :func:`description_length` (re-exported from
``slt._src.description_length``) turns a λ and m into bits: the volume-scaling
law :math:`V(\\delta) \\propto \\delta^\\lambda (\\log 1/\\delta)^{m-1}`.

References:
    S. Watanabe, *Algebraic Geometry and Statistical Learning Theory*,
    Cambridge University Press, 2009.

    M. Aoyagi and S. Watanabe, "Stochastic complexities of reduced rank
    regression in Bayesian estimation", Neural Networks 18(7):924-933, 2005.

    M. Aoyagi, "Consideration on the learning efficiency of multiple-layered
    neural networks with linear units", Neural Networks 172:106132, 2024.

    E. Lau, Z. Furman, G. Wang, D. Murfet, S. Wei, "The Local Learning
    Coefficient: A Singularity-Aware Complexity Measure", arXiv 2308.12108.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from fractions import Fraction

from slt._src.description_length import DescriptionLength, description_length

__all__ = [
    "DescriptionLength",
    "description_length",
    "dln",
    "normal_crossing",
    "regular",
    "rrr",
    "tanh_one_hidden",
]


# ---------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------


def _is_int(x: object) -> bool:
    """True for integers (including numpy integers), False for bools."""
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _check_int(name: str, value: object, *, minimum: int) -> int:
    if not _is_int(value):
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r} of type {type(value).__name__}")
    value = int(value)  # type: ignore[arg-type]
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return value


def _check_int_sequence(name: str, values: object, *, minimum: int, min_len: int) -> list[int]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        try:
            values = list(values)  # type: ignore[call-overload]
        except TypeError:
            raise ValueError(f"{name} must be a sequence of ints, got {values!r}") from None
    out = list(values)  # type: ignore[arg-type]
    if len(out) < min_len:
        raise ValueError(f"{name} must have at least {min_len} entries, got {len(out)}")
    for i, v in enumerate(out):
        if not _is_int(v) or int(v) < minimum:
            raise ValueError(f"{name} must contain ints >= {minimum}, got {v!r} at index {i}")
    return [int(v) for v in out]


# ---------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------


def regular(d: int) -> tuple[Fraction, int]:
    """Learning coefficient of a regular model with ``d`` parameters.

    For a regular model (positive definite Fisher information at the true
    parameter) the free energy reduces to the BIC:

    .. math::

        \\lambda = \\frac{d}{2}, \\qquad m = 1.

    Reference: Watanabe, *Algebraic Geometry and Statistical Learning Theory*,
    2009.

    Args:
        d: Number of parameters, a non-negative int.

    Returns:
        ``(Fraction(d, 2), 1)``.

    Raises:
        ValueError: If ``d`` is not a non-negative int.

    Example:
        >>> regular(3)
        (Fraction(3, 2), 1)
    """
    d = _check_int("d", d, minimum=0)
    return Fraction(d, 2), 1


def normal_crossing(
    powers: Sequence[int],
    prior_powers: Sequence[int | Fraction] | None = None,
) -> tuple[Fraction, int]:
    """Learning coefficient of a potential in normal crossing form.

    For :math:`K(w) = \\prod_i w_i^{2 k_i}` near the origin with prior
    :math:`\\varphi(w) \\propto \\prod_i |w_i|^{h_i}`,

    .. math::

        \\lambda = \\min_{i:\\, k_i > 0} \\frac{h_i + 1}{2 k_i}, \\qquad
        m = \\#\\Big\\{ i : k_i > 0,\\ \\frac{h_i + 1}{2 k_i} = \\lambda \\Big\\}.

    Coordinates with :math:`k_i = 0` do not appear in :math:`K` and do not
    constrain :math:`\\lambda`; they are skipped. With a flat prior
    (:math:`h_i = 0`) this is :math:`\\lambda = \\min_i 1/(2k_i)`.

    Reference: Watanabe, *Algebraic Geometry and Statistical Learning Theory*,
    2009 (standard form of the resolution theorem).

    Args:
        powers: The exponents :math:`k_i`, non-negative ints, at least one
            of them positive.
        prior_powers: The prior exponents :math:`h_i`, ints or
            :class:`fractions.Fraction` strictly greater than ``-1``, of the
            same length as ``powers``. Defaults to all zeros (flat prior).

    Returns:
        ``(lam, m)`` with ``lam`` a :class:`fractions.Fraction`.

    Raises:
        ValueError: If ``powers`` is empty, contains anything other than
            non-negative ints, or is all zero; or if ``prior_powers`` has the
            wrong length or an entry that is not a rational number > -1.

    Example:
        >>> normal_crossing([1, 1])  # K = x^2 y^2
        (Fraction(1, 2), 2)
        >>> normal_crossing([1, 2], prior_powers=[2, 0])
        (Fraction(1, 4), 1)
    """
    ks = _check_int_sequence("powers", powers, minimum=0, min_len=1)
    if prior_powers is None:
        hs = [Fraction(0)] * len(ks)
    else:
        raw = list(prior_powers)
        if len(raw) != len(ks):
            raise ValueError(f"prior_powers must have the same length as powers ({len(ks)}), got {len(raw)}")
        hs = []
        for i, h in enumerate(raw):
            if isinstance(h, bool) or not isinstance(h, numbers.Rational):
                raise ValueError(  # noqa: TRY004 - the API raises ValueError
                    f"prior_powers must contain ints or Fractions > -1, got {h!r} at index {i}"
                )
            h = Fraction(h)
            if h <= -1:
                raise ValueError(f"prior_powers must contain values > -1, got {h} at index {i}")
            hs.append(h)
    if all(k == 0 for k in ks):
        raise ValueError("powers must contain at least one positive entry")
    ratios = [(h + 1) / (2 * k) for k, h in zip(ks, hs) if k > 0]
    lam = min(ratios)
    return Fraction(lam), sum(1 for x in ratios if x == lam)


def rrr(M: int, H: int, N: int, r: int) -> tuple[Fraction, int]:
    """Learning coefficient of reduced-rank regression.

    The model is :math:`y = B A x` with :math:`A` of shape ``(H, M)`` and
    :math:`B` of shape ``(N, H)`` (``M`` inputs, ``H`` hidden units, ``N``
    outputs); the true map has rank ``r``. Aoyagi & Watanabe (2005):

    1. If :math:`N + r \\le M + H`, :math:`M + r \\le N + H` and
       :math:`H + r \\le M + N`:

       .. math::

           \\lambda = \\frac{-(H + r)^2 - M^2 - N^2 + 2(H + r)(M + N)
           + 2MN + \\epsilon}{8},

       with :math:`\\epsilon = 0, m = 1` when :math:`M + H + N + r` is even
       and :math:`\\epsilon = 1, m = 2` when it is odd.
    2. If :math:`M + H < N + r`: :math:`\\lambda = (HM - Hr + Nr)/2`, m = 1.
    3. If :math:`N + H < M + r`: :math:`\\lambda = (HN - Hr + Mr)/2`, m = 1.
    4. If :math:`M + N < H + r`: :math:`\\lambda = MN/2`, m = 1.

    Reference: M. Aoyagi and S. Watanabe, "Stochastic complexities of reduced
    rank regression in Bayesian estimation", Neural Networks 18(7), 2005.

    Args:
        M: Input dimension, a positive int.
        H: Hidden (inner) dimension, a positive int.
        N: Output dimension, a positive int.
        r: Rank of the true map, an int with ``0 <= r <= min(M, H, N)``.

    Returns:
        ``(lam, m)`` with ``lam`` a :class:`fractions.Fraction`.

    Raises:
        ValueError: If an argument is out of range.

    Example:
        >>> rrr(5, 3, 5, 0)
        (Fraction(13, 2), 2)
        >>> rrr(5, 4, 5, 0)
        (Fraction(8, 1), 1)
    """
    M = _check_int("M", M, minimum=1)
    H = _check_int("H", H, minimum=1)
    N = _check_int("N", N, minimum=1)
    r = _check_int("r", r, minimum=0)
    if r > min(M, H, N):
        raise ValueError(f"r must satisfy 0 <= r <= min(M, H, N) = {min(M, H, N)}, got {r}")
    if M + H < N + r:
        return Fraction(H * M - H * r + N * r, 2), 1
    if N + H < M + r:
        return Fraction(H * N - H * r + M * r, 2), 1
    if M + N < H + r:
        return Fraction(M * N, 2), 1
    numerator = -((H + r) ** 2) - M**2 - N**2 + 2 * (H + r) * (M + N) + 2 * M * N
    if (M + H + N + r) % 2 == 0:
        return Fraction(numerator, 8), 1
    return Fraction(numerator + 1, 8), 2


def dln(widths: Sequence[int], rank: int) -> tuple[Fraction, int]:
    """Learning coefficient of a deep linear network.

    The network is :math:`x \\mapsto W_L \\cdots W_1 x` with layer widths
    ``widths = (H_0, ..., H_L)`` (``H_0`` the input, ``H_L`` the output
    dimension, :math:`W_l` of shape :math:`H_l \\times H_{l-1}`), and the true
    product has rank ``r = rank``. Aoyagi (2024), Theorem 1: set
    :math:`M_s = H_s - r`, sort the :math:`M_s` ascending and take the
    shortest prefix :math:`\\Sigma` of length :math:`\\ell + 1 \\ge 2` with

    (a) :math:`\\max_{\\Sigma} M < \\min_{\\notin \\Sigma} M`,
    (b) :math:`\\sum_{\\Sigma} M_s \\ge \\ell \\max_{\\Sigma} M`,
    (c) :math:`\\sum_{\\Sigma} M_s < \\ell \\min_{\\notin \\Sigma} M`

    ((a) and (c) are vacuous when :math:`\\Sigma` is everything). With
    :math:`S = \\sum_{\\Sigma} M_s`, :math:`\\bar M = \\lceil S/\\ell \\rceil`
    and :math:`a = S - (\\bar M - 1)\\ell`,

    .. math::

        \\lambda = \\frac{-r^2 + r(H_0 + H_L)}{2} + \\frac{a(\\ell - a)}{4\\ell}
        - \\frac{\\ell(\\ell - 1)}{4}\\Big(\\frac{S}{\\ell}\\Big)^2
        + \\frac{1}{2}\\sum_{i < j \\in \\Sigma} M_i M_j,
        \\qquad m = a(\\ell - a) + 1.

    For two layers (``len(widths) == 3``) this coincides with :func:`rrr`;
    the value is invariant under reversing ``widths``. It is the global (most
    singular) value for rank ``r``; the local learning coefficient at a
    particular factorisation can be larger.

    References:
        M. Aoyagi, "Consideration on the learning efficiency of
        multiple-layered neural networks with linear units", Neural Networks
        172:106132, 2024, Theorem 1. Used as ground truth in Lau et al.,
        arXiv 2308.12108.

    Args:
        widths: Layer widths :math:`(H_0, \\ldots, H_L)`, positive ints, at
            least 2 entries.
        rank: Rank ``r`` of the true product matrix, an int with
            ``0 <= rank <= min(widths)``.

    Returns:
        ``(lam, m)`` with ``lam`` a :class:`fractions.Fraction`.

    Raises:
        ValueError: If ``widths`` or ``rank`` is invalid.

    Example:
        >>> dln([3, 4, 5, 6], 1)
        (Fraction(7, 1), 2)
        >>> dln([10, 10, 10, 10], 0)
        (Fraction(67, 2), 3)
    """
    hs = _check_int_sequence("widths", widths, minimum=1, min_len=2)
    r = _check_int("rank", rank, minimum=0)
    if r > min(hs):
        raise ValueError(f"rank must satisfy 0 <= rank <= min(widths) = {min(hs)}, got {r}")

    ms = sorted(h - r for h in hs)
    n = len(ms)
    chosen: list[int] | None = None
    for size in range(2, n + 1):
        ell = size - 1
        sigma = ms[:size]
        total = sum(sigma)
        if total < ell * sigma[-1]:  # (b)
            continue
        if size < n:
            rest_min = ms[size]
            if not sigma[-1] < rest_min:  # (a)
                continue
            if not total < ell * rest_min:  # (c)
                continue
        chosen = sigma
        break
    if chosen is None:  # pragma: no cover - Aoyagi (2024) proves existence
        raise RuntimeError(f"no admissible subset for widths={hs}, rank={r}")

    ell = len(chosen) - 1
    S = sum(chosen)
    m_bar = -(-S // ell)  # ceil(S / ell)
    a = S - (m_bar - 1) * ell
    pair_sum = (S * S - sum(x * x for x in chosen)) // 2  # sum_{i<j} M_i M_j
    lam = (
        Fraction(-r * r + r * (hs[0] + hs[-1]), 2)
        + Fraction(a * (ell - a), 4 * ell)
        - Fraction(ell * (ell - 1), 4) * Fraction(S, ell) ** 2
        + Fraction(pair_sum, 2)
    )
    return lam, a * (ell - a) + 1


def tanh_one_hidden(H: int) -> tuple[Fraction, int]:
    """Learning coefficient of a one-hidden-layer tanh network, zero target.

    The model is :math:`y = \\sum_{h=1}^{H} a_h \\tanh(b_h x)` with scalar
    input and output, and the true function is identically zero. Then

    .. math::

        \\lambda = \\frac{H + i^2 + i}{4i + 2}, \\qquad i = \\lfloor \\sqrt{H}
        \\rfloor.

    The multiplicity is **not** established by this module: the reference
    used here gives :math:`\\lambda` only, and ``1`` is returned as an
    assumed placeholder. Do not rely on the returned ``m``.

    Reference: Watanabe, *Algebraic Geometry and Statistical Learning Theory*,
    2009; used as a benchmark in Lau et al., arXiv 2308.12108.

    Args:
        H: Number of hidden units, a positive int.

    Returns:
        ``(lam, 1)`` with ``lam`` a :class:`fractions.Fraction`.

    Raises:
        ValueError: If ``H`` is not a positive int.

    Example:
        >>> tanh_one_hidden(5)
        (Fraction(11, 10), 1)
    """
    H = _check_int("H", H, minimum=1)
    i = math.isqrt(H)
    return Fraction(H + i * i + i, 4 * i + 2), 1
