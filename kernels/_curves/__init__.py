"""Learning curves: theory from a spectrum, and measured kernel / random-feature ridge regression."""
