#!/usr/bin/env bash
# Install Debian's chromium for the web page's end-to-end test (tests/test_web.py).
# Playwright's own browser download (`playwright install`) is not used: the test launches
# /usr/bin/chromium.  Where apt-get is missing this prints what to do and exits 0.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-get not found: install chromium with your package manager so that /usr/bin/chromium exists"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-liberation
/usr/bin/chromium --version
