#!/usr/bin/env sh
# Install the command-line audio tools the watermark robustness benchmark uses for its attacks:
# ffmpeg (AAC, MP3, Opus, atempo), sox (tempo, telephony) and espeak-ng (spoken test phrases).
# Where apt-get is missing (not Debian/Ubuntu) it says so and exits 0: valle2 itself and its
# tests need none of these tools.
set -u
PKGS="ffmpeg sox libsox-fmt-all espeak-ng"
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_audio_tools: apt-get not found; install $PKGS with your package manager" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "install_audio_tools: not root and no sudo; install $PKGS as root" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q || { echo "install_audio_tools: apt-get update failed" >&2; exit 0; }
$SUDO apt-get install -y -q --no-install-recommends $PKGS || { echo "install_audio_tools: apt-get install failed" >&2; exit 0; }
for tool in ffmpeg sox espeak-ng; do
    command -v "$tool" >/dev/null 2>&1 && echo "install_audio_tools: $tool ok" || echo "install_audio_tools: $tool missing" >&2
done
