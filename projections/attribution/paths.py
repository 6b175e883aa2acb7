"""What the attribution models read and return: conversion paths and credits per label."""

from __future__ import annotations

from dataclasses import dataclass

Touches = tuple[tuple[str, float], ...]
Labels = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Path:
    """One conversion path as the attribution models see it.

    ``touches`` are ``(label, age_days)`` pairs, oldest first; ``label`` is a
    channel or a campaign; ``age_days`` is the time from the touch to the
    conversion (for a non-converting path: to the end of its window), so ages
    never increase along the path. ``value`` is the conversion value, 0.0 for
    a non-converting path. `attribute` checks all of this and raises
    `ValueError` naming the offending path and field.
    """

    touches: Touches
    converted: bool
    value: float


@dataclass(frozen=True)
class Attribution:
    """Credits of one model, in conversions and in conversion value, per label.

    ``conversions``/``value``: the attributed conversions (converting paths
    with at least one touch) and their value; the credits add up to them to
    within floating-point rounding. ``unattributed_conversions``/
    ``unattributed_value``: converting paths without a touch, credited to no
    label. ``credits`` has an entry for every label seen in any input path
    (zero where the model gives it nothing), except where ``notes`` says
    otherwise (Shapley pools labels beyond its exact limit).
    """

    model: str
    conversions: int
    value: float
    unattributed_conversions: int
    credits: dict[str, tuple[float, float]]
    unattributed_value: float = 0.0
    notes: tuple[str, ...] = ()
