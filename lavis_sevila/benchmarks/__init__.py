"""Measurements that are run by hand and reported (not part of the test suite)."""
