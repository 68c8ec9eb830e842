"""How likely each point is wrong, and in which order to look at them.

Owns: the suspicion signals and their calibrated model, metrics against ground truth
(OKS AP, recall, clicks per person), the review queues.
May import: annotator.core, exporters. It runs no network itself: the re-run signals
are made by annotator.prefill.rerun and handed in as numbers.
"""
