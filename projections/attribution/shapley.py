"""Exact Shapley-value attribution over the channel sets of all paths.

The game. Players are the labels; the worth of a coalition S is the
conversion rate of the paths (converting and non-converting, with at least
one touch) whose set of labels is a subset of S:

    v(S) = conversions(paths with labels ⊆ S) / paths(with labels ⊆ S),  v(∅) = 0

i.e. the conversion rate of a world in which only the channels in S exist and
the paths that needed any other channel never happened. This follows the
"causally motivated" attribution of Dalessandro, Perlich, Stitelman & Provost
(ADKDD 2012), which takes the conversion probability of a channel set as the
worth of a coalition, so non-converting paths count: a channel that mostly
reaches people who do not buy lowers v. It takes the subset (⊆) form of
Zhao, Mahboobi & Bagheri ("Shapley value methods for attribution modeling in
online advertising", 2018) rather than exact channel sets, so v is defined by
real paths for every coalition instead of being 0 wherever no path has
exactly that channel set. The Shapley value itself is Shapley (1953):
phi_i = sum over S not containing i of |S|!(k-|S|-1)!/k! (v(S+i) - v(S)).

Why not v(S) = conversions of the paths ⊆ S: that game's Shapley value is
an equal split over each converting path's distinct channels (Zhao et al.'s
simplified formula), which ignores non-converting paths entirely.

Credits. The phi sum to v(all) = the overall conversion rate; each label's
credit in conversions is its share phi_i / sum(phi) of the attributed
conversions, and its value credit the same share of the attributed value (as
the Markov model does). A label can lower the conversion rate of the paths
it joins and so get phi_i < 0; such labels get no credit, the others share all
of it, and ``notes`` names them. Without non-converting paths v(S) is 1 as
soon as any path fits in S, so the game only measures which labels
complete paths: give the model the prospects too.

Computation, exact. Conversions and paths per exact channel set are
counted into two arrays over the 2^k coalitions (k = number of labels), turned
into subset sums by the fast zeta transform (k vectorised passes; Kennes,
"Computational aspects of the Möbius transformation of graphs", IEEE SMC 1992;
Björklund, Husfeldt, Kaski & Koivisto, "Fourier meets Möbius: fast subset
convolution", STOC 2007), and phi_i is one vectorised weighted sum per label
over the 2^(k-1) coalitions without i: O(k 2^k) arithmetic, ~60 MiB at k = 20.

Limit: exact for up to ``MAX_EXACT_CHANNELS`` = 20 distinct labels (2^20
coalitions, well under a second here). Beyond that the least frequent labels
(by number of paths that touch them; ties by name) are pooled into one
player named ``OTHER`` so that 20 players remain; the pooled labels then have
no credit entry of their own, ``OTHER`` carries their joint credit, and
``notes`` lists them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from projections.attribution.path_counts import PathCounts, Totals, attribution_from_shares, fold_paths
from projections.attribution.paths import Attribution, Labels, Path

MAX_EXACT_CHANNELS = 20
OTHER = "(other)"


def shapley_values(paths: Sequence[Path]) -> dict[str, float]:
    """The raw Shapley values phi of the conversion-rate game (they sum to the overall conversion rate).

    Keys are the players: the labels, or the kept ones plus `OTHER` past the exact limit.
    """
    counts = fold_paths(paths)
    paths_by_set, conversions_by_set = channel_set_counts(counts.converting, counts.non_converting)
    players, pooled = _players(counts.labels, paths_by_set)
    if not players:
        return {}
    return dict(zip(players, _shapley_values(players, paths_by_set, conversions_by_set, pooled).tolist()))


def shapley(counts: PathCounts) -> Attribution:
    return shapley_of_sets(counts, *channel_set_counts(counts.converting, counts.non_converting))


def channel_set_counts(
    converting: Mapping[Labels, tuple[int, float]], non_converting: Mapping[Labels, int]
) -> tuple[Counter[frozenset[str]], Counter[frozenset[str]]]:
    """Paths (converting or not) and conversions per set of labels: all the game reads,
    from the paths tallied per label sequence (as `PathCounts` holds them)."""
    paths_by_set: Counter[frozenset[str]] = Counter()
    conversions_by_set: Counter[frozenset[str]] = Counter()
    for sequence, (count, _) in converting.items():
        labels = frozenset(sequence)
        paths_by_set[labels] += count
        conversions_by_set[labels] += count
    for sequence, count in non_converting.items():
        paths_by_set[frozenset(sequence)] += count
    return paths_by_set, conversions_by_set


def shapley_of_sets(
    totals: Totals, paths_by_set: Mapping[frozenset[str], int], conversions_by_set: Mapping[frozenset[str], int]
) -> Attribution:
    """The model's credits from the `channel_set_counts` of the paths ``totals`` sums up."""
    players, pooled = _players(totals.labels, paths_by_set)
    notes: list[str] = []
    if pooled:
        notes.append(
            f"shapley: {len(totals.labels)} distinct labels exceed the exact limit of {MAX_EXACT_CHANNELS}; "
            f"the {len(pooled)} least frequent were pooled into {OTHER!r}: {_listing(pooled)}"
        )
    if totals.conversions == 0:
        return attribution_from_shares("shapley", totals, {}, tuple(notes), labels=players)

    phi = _shapley_values(players, paths_by_set, conversions_by_set, pooled)
    negative = [p for p, value in zip(players, phi) if value < 0]
    if negative:
        notes.append(
            "shapley: negative Shapley value (these labels lower the conversion rate of the journeys "
            f"they join), given no credit: {', '.join(negative)}"
        )
    positive = np.clip(phi, 0.0, None)
    total = float(positive.sum())
    shares = {p: float(value) / total for p, value in zip(players, positive)}
    return attribution_from_shares("shapley", totals, shares, tuple(notes), labels=players)


def _players(
    labels: tuple[str, ...], paths_by_set: Mapping[frozenset[str], int]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if len(labels) <= MAX_EXACT_CHANNELS:
        return labels, ()
    reach: Counter[str] = Counter()
    for labels_touched, count in paths_by_set.items():
        for label in labels_touched:
            reach[label] += count
    by_reach = sorted(labels, key=lambda label: (-reach[label], label))
    kept = by_reach[: MAX_EXACT_CHANNELS - 1]
    pooled = tuple(sorted(by_reach[MAX_EXACT_CHANNELS - 1 :]))
    return (*sorted(kept), OTHER), pooled


def _shapley_values(
    players: tuple[str, ...],
    paths_by_set: Mapping[frozenset[str], int],
    conversions_by_set: Mapping[frozenset[str], int],
    pooled: tuple[str, ...],
) -> np.ndarray:
    k = len(players)
    bit = {p: 1 << i for i, p in enumerate(players)}
    for label in pooled:
        bit[label] = bit[OTHER]

    masks: Counter[int] = Counter()
    conversions_by_mask: Counter[int] = Counter()
    for labels, count in paths_by_set.items():
        masks[_mask(labels, bit)] += count
    for labels, count in conversions_by_set.items():
        conversions_by_mask[_mask(labels, bit)] += count

    size = 1 << k
    paths = _counts_array(masks, size)
    conversions = _counts_array(conversions_by_mask, size)
    _zeta(paths, k)
    _zeta(conversions, k)
    worth = np.divide(conversions, paths, out=np.zeros(size), where=paths > 0)

    # weight[s] = s!(k-s-1)!/k! for a coalition of s players joined by one more
    weight = np.array([1.0 / (k * math.comb(k - 1, s)) for s in range(k)] + [0.0])
    coalition_weight = weight[_popcounts(k)]
    phi = np.empty(k)
    for i in range(k):
        shaped = worth.reshape(-1, 2, 1 << i)
        without_i = coalition_weight.reshape(-1, 2, 1 << i)[:, 0, :]
        phi[i] = float(np.sum(without_i * (shaped[:, 1, :] - shaped[:, 0, :])))
    return phi


def _listing(labels: tuple[str, ...], shown: int = 20) -> str:
    more = f" and {len(labels) - shown} more" if len(labels) > shown else ""
    return ", ".join(labels[:shown]) + more


def _mask(labels: frozenset[str], bit: dict[str, int]) -> int:
    mask = 0
    for label in labels:
        mask |= bit[label]
    return mask


def _counts_array(by_mask: Counter[int], size: int) -> np.ndarray:
    array = np.zeros(size)
    if by_mask:
        array[np.fromiter(by_mask.keys(), dtype=np.int64)] = np.fromiter(by_mask.values(), dtype=np.float64)
    return array


def _zeta(array: np.ndarray, k: int) -> None:
    """In place: array[S] becomes the sum of array[T] over all T ⊆ S."""
    for i in range(k):
        shaped = array.reshape(-1, 2, 1 << i)
        shaped[:, 1, :] += shaped[:, 0, :]


def _popcounts(k: int) -> np.ndarray:
    counts = np.zeros(1 << k, dtype=np.int64)
    for i in range(k):
        counts.reshape(-1, 2, 1 << i)[:, 1, :] += 1
    return counts
