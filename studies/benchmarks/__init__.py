"""Benchmark scripts: speed and accuracy figures, printed as ratios against a baseline."""
