"""Pseudo-label distillation rounds: train a student, measure it on a frozen gold set, keep or reject.

Owns: training (torch; the `train` extra), the round registry in the project database.
May import: annotator.core, annotator.review, annotator.prefill, exporters.
"""
