"""The browser pages (`pose-annotator serve`): a pose check on upload, and a read-only project viewer.

For people who will not install the desktop app. No Dear PyGui here: it runs headless.
pose.py (uploads, the model, drawing), viewer.py (the project, read only), app.py (Flask routes),
pages.py (HTML).
"""
