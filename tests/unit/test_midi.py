"""Melody extraction from real-world-shaped MIDI, and corrupt inputs."""

import io

import mido
import pretty_midi
import pytest

from musicgen.music.melody import TICKS_PER_BEAT
from musicgen.music.midi import UnusableInput, read_midi, write_midi
from tests.conftest import random_melody


def _pop_song(lead_name: str = "Lead Vocal") -> bytes:
    """Drums, bass, chords and a lead, with a tempo change halfway: a typical pop MIDI file."""
    tpq = 480
    tempo_track = mido.MidiTrack(
        [
            mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0),
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(100), time=0),
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(130), time=16 * tpq),
        ]
    )

    def track(name, channel, program, notes):
        """notes: (pitch, start_tick, end_tick); written as absolute-time events then delta-encoded."""
        events = [(0, mido.Message("program_change", channel=channel, program=program))]
        for pitch, start, end in notes:
            events.append((start, mido.Message("note_on", channel=channel, note=pitch, velocity=90)))
            events.append((end, mido.Message("note_off", channel=channel, note=pitch, velocity=0)))
        events.sort(key=lambda e: (e[0], e[1].type == "note_on"))
        out, now = mido.MidiTrack([mido.MetaMessage("track_name", name=name)]), 0
        for tick, message in events:
            out.append(message.copy(time=tick - now))
            now = tick
        return out

    beats = range(32)
    drums = track("Drums", 9, 0, [(36 if i % 2 == 0 else 38, i * tpq, i * tpq + 60) for i in beats])
    bass = track("Bass", 1, 33, [(36 + (i // 4) % 5, i * tpq, (i + 1) * tpq) for i in beats])
    chords = track("Piano", 2, 0, [(p, i * tpq, (i + 4) * tpq) for i in beats if i % 4 == 0 for p in (60, 64, 67)])
    lead = track(lead_name, 3, 80, [(67 + [0, 2, 4, 5, 7, 5, 4, 2][i % 8], i * tpq, i * tpq + 430) for i in beats])
    song = mido.MidiFile(ticks_per_beat=tpq, tracks=[tempo_track, drums, bass, chords, lead])
    buffer = io.BytesIO()
    song.save(file=buffer)
    return buffer.getvalue()


def test_pop_file_with_drums_and_tempo_change_yields_the_lead():
    melody = read_midi(_pop_song())
    assert melody.meta["track"] == "Lead Vocal"
    assert [n.pitch for n in melody.notes[:8]] == [67, 69, 71, 72, 74, 72, 71, 69]
    assert len(melody.notes) == 32 and melody.time_signature == (4, 4)
    # onsets stay on the beat grid whatever the tempo does
    assert all(n.onset % 12 == 0 for n in melody.notes)


def test_unnamed_tracks_pick_the_high_monophonic_line_not_bass_or_chords():
    melody = read_midi(_pop_song(lead_name="Track 4"))
    assert melody.meta["track"] == "Track 4"


def test_write_then_read_is_exact():
    import random

    original = random_melody(random.Random(3), time_signature=(6, 8))
    melody = read_midi(write_midi([("Melody", original)]))
    assert melody.notes == original.notes and melody.time_signature == (6, 8)


def _pretty_midi_reference(parts, tempo, time_signature, key_number) -> pretty_midi.PrettyMIDI:
    """What pretty_midi's own writer makes of these parts (the writer musicgen used before symusic)."""
    pm = pretty_midi.PrettyMIDI(resolution=480, initial_tempo=tempo)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(*time_signature, 0.0))
    pm.key_signature_changes.append(pretty_midi.KeySignature(key_number, 0.0))
    seconds_per_tick = 60.0 / tempo / TICKS_PER_BEAT
    for name, melody in parts:
        instrument = pretty_midi.Instrument(program=0, name=name)
        instrument.notes = [pretty_midi.Note(80, n.pitch, n.onset * seconds_per_tick,
                                             (n.onset + n.duration) * seconds_per_tick) for n in melody.notes]
        pm.instruments.append(instrument)
    buffer = io.BytesIO()
    pm.write(buffer)
    return pretty_midi.PrettyMIDI(io.BytesIO(buffer.getvalue()))


def _contents(pm: pretty_midi.PrettyMIDI) -> dict:
    return {
        "tempo": [round(t, 3) for t in pm.get_tempo_changes()[1]],
        "meter": [(t.numerator, t.denominator, t.time) for t in pm.time_signature_changes],
        "key": [(k.key_number, k.time) for k in pm.key_signature_changes],
        "parts": [(i.name, i.program, i.is_drum, [(round(n.start, 6), round(n.end, 6), n.pitch, n.velocity)
                                                  for n in i.notes]) for i in pm.instruments],
    }


@pytest.mark.parametrize(
    "key, key_number, time_signature, tempo, voices",
    [("C major", 0, (4, 4), 100.0, 1), ("F# minor", 18, (6, 8), 132.5, 1), ("Eb major", 3, (3, 4), 72.0, 4),
     ("Bb minor", 22, (2, 2), 60.0, 2)],
)
def test_written_midi_reads_back_in_pretty_midi_as_its_own_writer_would_make_it(key, key_number, time_signature,
                                                                                 tempo, voices):
    import random
    from dataclasses import replace

    rng = random.Random(key_number)
    parts = [(f"Voice {v}", replace(random_melody(rng, 40, time_signature), key=key, tempo=tempo))
             for v in range(voices)]
    ours = pretty_midi.PrettyMIDI(io.BytesIO(write_midi(parts)))
    assert _contents(ours) == _contents(_pretty_midi_reference(parts, tempo, time_signature, key_number))
    assert len(ours.instruments) == voices and ours.instruments[0].notes


@pytest.mark.parametrize(
    "data, kind",
    [
        (b"", "not_midi"),
        (b"just some text, not a MIDI file\n", "not_midi"),
        (b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0", "no_notes"),  # header only
    ],
)
def test_corrupt_inputs_raise_a_clear_kind(data, kind):
    with pytest.raises(UnusableInput) as err:
        read_midi(data)
    assert err.value.kind == kind


def test_truncated_file_is_reported_not_crashing():
    import random

    data = write_midi([("Melody", random_melody(random.Random(0)))])
    with pytest.raises(UnusableInput) as err:
        read_midi(data[: len(data) // 2])
    assert err.value.kind in {"corrupt_midi", "no_notes"}


def test_drums_only_file_is_unusable():
    pm = pretty_midi.PrettyMIDI()
    drums = pretty_midi.Instrument(0, is_drum=True)
    drums.notes = [pretty_midi.Note(100, 36, i * 0.5, i * 0.5 + 0.1) for i in range(16)]
    pm.instruments.append(drums)
    buffer = io.BytesIO()
    pm.write(buffer)
    with pytest.raises(UnusableInput, match="drum"):
        read_midi(buffer.getvalue())
