"""Projections: folds over logged events and queries over their state.

Nothing in this package reads the clock, draws random ids, logs, does I/O or
switches the garbage collector; it depends only on ``events``. The folded states
are mutable aggregates (``evolve`` updates one in place and returns it): ``journey``
folds one identity stream, ``identity`` resolves links and merges into groups,
``population`` holds every journey plus the identity graph. ``group`` summarises
one group and ``group_cache`` keeps the summaries beside the state; ``views``
answers each question as a JSON-ready document, and ``attribution`` holds the
multi-touch models over conversion paths.
"""
