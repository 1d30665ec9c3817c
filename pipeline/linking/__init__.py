"""Corpus-wide speaker linking: the algorithm (`algorithm`) and the linking of a run's output (`run`)."""
