"""pose-annotator: photos and videos of people -> a verified 33-point pose dataset.

One subpackage per capability; imports point down this list only (tests/test_layers.py):

    core      data model, SQLite store, undoable commands, project, media, import, render
    review    how likely each point is wrong: signals, calibration, metrics, queues
    prefill   the models: person detection, BlazePose landmarks, re-runs, worker processes
    distill   pseudo-label distillation rounds (training a student, the round registry)
    cvat      CVAT server sync and the cvat-sdk auto-annotation function
    gui       the desktop app: headless state apart from the Dear PyGui view
    web       the browser pages (`serve`)
    cli       the `pose-annotator` command line

`exporters` (top level, beside this package) holds the file formats and sits just above core.
"""
