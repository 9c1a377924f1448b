"""Kernel matrices (analytic, empirical, random-feature) and their spectra."""
