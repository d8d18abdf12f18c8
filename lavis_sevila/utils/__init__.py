"""Small helpers below every other layer (no torch, no LAVIS): progress reporting."""
