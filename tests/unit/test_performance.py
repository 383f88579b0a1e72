"""Each style is played as itself: instrument, tempo by the meter's beat, accents by the bar."""

import io

import pretty_midi
import pytest

from musicgen.music.export import to_midi_bytes
from musicgen.music.melody import Melody, Note
from musicgen.music.performance import Performance, beat_ticks, velocities


@pytest.mark.parametrize("meter, beat, quarter_tempo", [
    ((4, 4), 12, 108.0), ((3, 4), 12, 108.0), ((2, 2), 24, 216.0), ((6, 8), 18, 162.0), ((9, 8), 18, 162.0),
    ((3, 8), 6, 54.0),
])
def test_tempo_counts_the_meters_beat(meter, beat, quarter_tempo):
    assert beat_ticks(meter) == beat
    assert Performance(tempo=108).quarter_tempo(meter) == quarter_tempo


def test_accents_follow_the_bar():
    bar = [Note(60, t, 3) for t in range(0, 48, 3)]  # sixteenths through a 4/4 bar
    loud = velocities(Melody(tuple(bar), (4, 4)), Performance(velocity=80, accent=12)).tolist()
    assert loud[0] == 92 and loud[8] == 86  # downbeat, then the middle of the bar
    assert loud[4] == loud[12] == 80  # the other beats
    assert loud[1] == loud[2] == 76  # off the beat
    jig = Melody(tuple(Note(60, t, 6) for t in range(0, 36, 6)), (6, 8))
    assert velocities(jig, Performance(velocity=80, accent=12)).tolist() == [92, 76, 76, 80, 76, 76]


def test_styles_sound_like_themselves_in_the_midi_file():
    notes = tuple(Note(60 + i, 12 * i, 12) for i in range(8))
    organ = pretty_midi.PrettyMIDI(io.BytesIO(to_midi_bytes(Melody(notes, meta={"style": "bach_chorale"}))))
    fiddle = pretty_midi.PrettyMIDI(io.BytesIO(to_midi_bytes(Melody(notes, meta={"style": "irish_folk"}))))
    chosen = pretty_midi.PrettyMIDI(
        io.BytesIO(to_midi_bytes(Melody(notes, meta={"style": "irish_folk", "program": 78})))
    )
    unknown = pretty_midi.PrettyMIDI(io.BytesIO(to_midi_bytes(Melody(notes, meta={"style": "my_own"}))))
    assert [pm.instruments[0].program for pm in (organ, fiddle, chosen, unknown)] == [19, 110, 78, 0]
    velocities_of = [n.velocity for n in fiddle.instruments[0].notes]
    assert velocities_of[0] > velocities_of[1] and len(set(velocities_of)) > 1
    with pytest.raises(ValueError, match="0-127"):
        Performance(program=128)
