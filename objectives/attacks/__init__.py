"""Attacks of an honest-but-curious cloud on what it sees; leakage is the best attack's recovery rate."""
