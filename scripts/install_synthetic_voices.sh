#!/usr/bin/env bash
# Install the synthesisers valle2.data.synthesize_corpus uses for extra speakers: Debian's
# espeak-ng (formant voices and variants), flite (diphone/cluster voices kal, awb, rms, slt) and
# festival with two English voices (ked_diphone, a diphone voice; cmu_us_slt_arctic_hts, an HMM voice),
# and Debian's fortunes (the sentences `valle2 recipe synthetic` has them read: valle2.data.texts).
# Exits 0 with a message where apt-get (or root) is not available; the synthetic speakers are optional.
set -euo pipefail

PKGS=(espeak-ng flite festival festvox-kdlpc16k festvox-us-slt-hts fortunes)
if command -v espeak-ng >/dev/null 2>&1 && command -v flite >/dev/null 2>&1 && command -v text2wave >/dev/null 2>&1 \
    && [ -d /usr/share/festival/voices/english/ked_diphone ] && [ -d /usr/share/festival/voices/us/cmu_us_slt_arctic_hts ] \
    && [ -f /usr/share/games/fortunes/fortunes ]; then
    echo "espeak-ng, flite, festival's voices and the fortunes are already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-get not found: install ${PKGS[*]} with your package manager for synthetic speakers (optional)"
    exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        echo "not root and no password-less sudo: run 'apt-get install ${PKGS[*]}' as root for synthetic speakers (optional)"
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${PKGS[@]}"
echo "installed: $(command -v espeak-ng) $(command -v flite) $(command -v text2wave)"
