"""The data model and everything that stores or changes it, with no model, GUI or server in it.

Owns: the 33-point skeleton, Person/Frame, the SQLite store, the undoable command
session, the project folder and its settings, media reading, file import, rendering.
May import: the standard library, numpy, OpenCV, Pillow. Nothing else of annotator.
"""
