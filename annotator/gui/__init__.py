"""The desktop app. `state`, `conflicts`, `propagate` and `keys` are headless (tested without a
display); only `app` imports Dear PyGui and draws `state.AppState`.

May import: every package below it (core, review, prefill, distill, cvat, exporters).
"""
