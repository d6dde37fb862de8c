"""Data files the server reads at run time: word lists and Unicode tables."""
