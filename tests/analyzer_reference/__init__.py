"""A frozen copy of analyzer/ (load, eager, live, forktree, lazy, nofork,
slabcheck, report) as it was before the P3 performance work (commit 36cb4cd,
the pandas-based implementation), kept as the oracle of
tests/test_analyzer_equivalence.py: the optimised analyzer must give the same
report. Not used by anonscope itself. When a model rule changes on purpose,
change it here too, or retire the oracle and its test."""
