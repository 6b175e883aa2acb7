"""Pure projections: folds over logged events and queries over their state.

Nothing in this package reads the clock, draws random ids, logs or does I/O;
it depends only on ``events``. ``journey`` folds one identity stream,
``identity`` resolves links and merges into groups, ``population`` holds every
journey plus the identity graph, ``views`` answers each question as a
JSON-ready document, and ``attribution`` holds the multi-touch models.
"""
