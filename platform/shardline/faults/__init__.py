"""Fault injection against a running deployment: real processes, real kills.

Used by the fault tests (tests/integration/test_faults_*.py, bounded sizes) and
`bench/faults.py` (the long versions). Every scenario drives streams through the
router with `shardline.outcomes` and returns its tally, so LOST and CORRUPT are
counted the same way everywhere.
"""
