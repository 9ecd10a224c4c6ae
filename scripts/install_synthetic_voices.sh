#!/usr/bin/env bash
# Install the synthesisers valle2.data.synthesize_corpus uses for extra speakers: Debian's
# espeak-ng (formant voices and variants) and flite (diphone/cluster voices kal, awb, rms, slt).
# Festival is not installed: synthesize_corpus does not use it.
# Exits 0 with a message where apt-get (or root) is not available; the synthetic speakers are optional.
set -euo pipefail

if command -v espeak-ng >/dev/null 2>&1 && command -v flite >/dev/null 2>&1; then
    echo "espeak-ng and flite are already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-get not found: install espeak-ng and flite with your package manager for synthetic speakers (optional)"
    exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        echo "not root and no password-less sudo: run 'apt-get install espeak-ng flite' as root for synthetic speakers (optional)"
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends espeak-ng flite
echo "installed: $(command -v espeak-ng) $(command -v flite)"
