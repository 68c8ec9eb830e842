"""CVAT: the server client, push/pull with a three-way merge, and the auto-annotation function.

May import: annotator.core, annotator.review, annotator.prefill, exporters.
"""
