"""Calibration of the training tests: retrain references and known-bad variants on many seeds."""
