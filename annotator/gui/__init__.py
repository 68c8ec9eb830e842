"""The Dear PyGui desktop app: a thin layer that draws annotator.gui_state.AppState.

Imports dearpygui; nothing headless may import this package.
"""
