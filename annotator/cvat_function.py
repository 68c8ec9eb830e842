"""Kept so `--function-module annotator.cvat_function` (the path CVAT users scripted) still works;
the function lives in annotator.cvat.function."""
from annotator.cvat.function import create, detect, main, spec  # noqa: F401

if __name__ == "__main__":
    raise SystemExit(main())
