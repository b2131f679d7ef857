"""Evaluation: error rates and translation scores."""
