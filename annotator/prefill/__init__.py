"""The models that put points on people, and the pre-fill run over a project.

Owns: MediaPipe's BlazePose pipeline (detector, ROI, landmarks), the model files,
the re-runs that feed the review signals, worker processes, a student's runtime.
May import: annotator.core, annotator.review, exporters.
"""
