"""Evaluating generated melodies: objective metrics, a style classifier, and copy detection (novelty)."""
