#!/usr/bin/env sh
# Optional audio rendering for WAV previews: FluidSynth and a General MIDI soundfont.
# Never fails the set-up: without them musicgen skips WAV output with a warning.
if command -v fluidsynth >/dev/null 2>&1 && [ -e /usr/share/sounds/sf2/FluidR3_GM.sf2 ]; then
    exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing fluidsynth and fluid-soundfont-gm for WAV previews"
    (apt-get install -y -q --no-install-recommends fluidsynth fluid-soundfont-gm >/dev/null 2>&1 \
        || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends fluidsynth fluid-soundfont-gm >/dev/null 2>&1)) \
        || echo "could not install fluidsynth: WAV previews will be skipped"
else
    echo "fluidsynth not found (install fluidsynth + fluid-soundfont-gm, or set MUSICGEN_SOUNDFONT): WAV previews will be skipped"
fi
exit 0
