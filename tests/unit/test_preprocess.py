"""The preprocessing UDF and the split assignment, without Ray."""

import random
import struct

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from musicgen.data.preprocess import INTERNAL_COLUMNS, PARSED_SCHEMA, parse_files, write_shard
from musicgen.data.splits import assign_splits, piece_of, split_of
from musicgen.music.melody import Melody, Note, interval_fingerprints
from musicgen.music.midi import write_midi
from musicgen.tokenizers import make_tokenizer, tokenizer_from_dict
from tests.conftest import random_melody


def test_parse_files_turns_every_bad_file_into_an_error_row(tmp_path):
    good = random_melody(random.Random(1))
    contents = {
        "good.mid": write_midi([("Melody", good)]),
        "empty.mid": b"",
        "text.mid": b"hello, I am not MIDI",
        "truncated.mid": write_midi([("Melody", good)])[:30],
        "short.mid": write_midi([("Melody", Melody((Note(60, 0, 12), Note(62, 12, 12))))]),
        "header_only.mid": b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0",
        "no_meter.mid": midi_with_time_signature_numerator(0),
    }
    folder = tmp_path / "folk"
    folder.mkdir()
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    files = {str(folder / name): None for name in contents}
    files[str(folder / "vanished.mid")] = None  # listed, then deleted before the job read it
    tokenizer = make_tokenizer("events", ["folk"])
    out = parse_files(
        pa.table({"path": list(files)}),
        filesystem=pafs.LocalFileSystem(),
        tokenizer_config=tokenizer.to_dict(),
        file_info={p: ("folk", piece_of(p)) for p in files},
        uri_prefix="",
        min_notes=8,
        head_notes=16,
    )
    assert out.schema == PARSED_SCHEMA
    rows = {r["source_uri"].rsplit("/", 1)[1]: r for r in out.to_pylist()}
    assert rows["good.mid"]["error_kind"] is None
    decoded, style = tokenizer_from_dict(tokenizer.to_dict()).decode(rows["good.mid"]["tokens"])
    assert decoded.notes == good.notes and style == "folk"
    assert rows["empty.mid"]["error_kind"] == "empty_file"
    assert rows["text.mid"]["error_kind"] == "not_midi"
    assert rows["truncated.mid"]["error_kind"] in {"corrupt_midi", "no_notes"}
    assert rows["short.mid"]["error_kind"] == "too_short"
    assert rows["header_only.mid"]["error_kind"] == "no_notes"
    assert rows["vanished.mid"]["error_kind"] == "unreadable"
    assert rows["no_meter.mid"]["error_kind"] == "bad_time_signature"


def test_write_shard_writes_kept_melodies_by_split_without_internal_columns(tmp_path):
    folder = tmp_path / "folk"
    folder.mkdir()
    names = ["a.mid", "b.mid", "c.mid", "broken.mid"]
    for i, name in enumerate(names[:3]):
        (folder / name).write_bytes(write_midi([("Melody", random_melody(random.Random(i)))]))
    (folder / "broken.mid").write_bytes(b"not midi")
    paths = [str(folder / name) for name in names]
    parsed = parse_files(
        pa.table({"path": paths}),
        filesystem=pafs.LocalFileSystem(),
        tokenizer_config=make_tokenizer("events", ["folk"]).to_dict(),
        file_info={p: ("folk", piece_of(p)) for p in paths},
        uri_prefix="",
        min_notes=8,
        head_notes=16,
    )
    ids = {r["source_uri"].rsplit("/", 1)[1]: r["melody_id"] for r in parsed.to_pylist()}
    splits = {ids["a.mid"]: "train", ids["b.mid"]: "test"}  # c.mid dropped (as a duplicate would be)
    # the parsed rows arrive as two blocks; the error row and c.mid are not written
    blocks = parsed.slice(0, 2), parsed.slice(2)
    write_shard(splits, pafs.LocalFileSystem(), str(tmp_path / "melodies"), "part-00000", *blocks)

    written = {split: pq.read_table(tmp_path / "melodies" / f"split={split}" / "part-00000.parquet")
               for split in ("train", "test")}
    assert not (tmp_path / "melodies" / "split=val").exists()
    assert {split: t.column("melody_id").to_pylist() for split, t in written.items()} == {
        "train": [ids["a.mid"]], "test": [ids["b.mid"]]}
    assert written["train"].schema.names == [n for n in PARSED_SCHEMA.names if n not in INTERNAL_COLUMNS]
    assert written["test"].column("tokens").to_pylist() == [
        r["tokens"] for r in parsed.to_pylist() if r["melody_id"] == ids["b.mid"]]


def midi_with_time_signature_numerator(numerator: int) -> bytes:
    """A one-track MIDI file of ten quarter notes whose time signature has the given numerator."""
    events = bytes([0, 0xFF, 0x58, 4, numerator, 2, 24, 8])
    events += b"".join(bytes([0, 0x90, 60 + i, 80, 0x60, 0x80, 60 + i, 0]) for i in range(10))
    events += bytes([0, 0xFF, 0x2F, 0])
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, 96) + b"MTrk" + struct.pack(">I", len(events)) + events


def test_piece_of_groups_voices_of_one_work():
    assert piece_of("/c/renaissance/Agnus_01__0-Soprano.mid") == piece_of("/c/renaissance/Agnus_01__3-Bass.mid")
    assert piece_of("/c/folk/tune1.mid") != piece_of("/c/folk/tune2.mid")


def _index(rows):
    cols = list(zip(*rows))
    return pa.table({"melody_id": cols[0], "piece_id": cols[1], "fingerprint": cols[2], "head_fingerprint": cols[3]})


def test_splits_keep_pieces_and_shared_openings_together_and_drop_duplicates():
    rng = random.Random(7)
    rows, melodies = [], {}
    for piece in range(300):
        for voice in range(3):  # three voices of one work
            m = random_melody(rng, n_notes=20)
            melodies[f"{piece}-{voice}"] = m
            rows.append((f"{piece}-{voice}", f"work{piece}", *interval_fingerprints(m, 16)))
    # the same tune in another collection, transposed and with another ending
    variant = Melody(melodies["5-0"].transpose(2).notes[:18] + (Note(60, 1000, 12),))
    rows.append(("variant", "other-collection/tune", *interval_fingerprints(variant, 16)))
    # an exact (transposed) duplicate of a whole melody
    dup = melodies["9-1"].transpose(-3)
    rows.append(("zz-dup", "another/tune", *interval_fingerprints(dup, 16)))

    splits, duplicates = assign_splits(_index(rows), val_fraction=0.1, test_fraction=0.1)
    assert duplicates == {"zz-dup"}
    for piece in range(300):
        assert len({splits[f"{piece}-{v}"] for v in range(3)}) == 1, "voices of one work straddle splits"
    assert splits["variant"] == splits["5-0"]
    counts = {s: list(splits.values()).count(s) for s in ("train", "val", "test")}
    assert counts["train"] > counts["val"] > 0 and counts["test"] > 0


def test_split_is_the_same_on_every_machine_and_run():
    # golden values: a split that moved (a salted hash, another hash function) would move pieces
    # between train and test of shards written before
    assert [split_of(f"p{i}", 0.1, 0.1) for i in range(16)] == [
        "train", "train", "train", "train", "train", "train", "train", "train",
        "train", "train", "train", "test", "train", "train", "train", "test"]
    assert [split_of(f"p{i}", 0.1, 0.1) for i in (34, 35)] == ["val", "test"]


def test_a_broken_tune_in_an_abc_file_is_recorded_and_the_others_kept(tmp_path):
    tune = "X:{x}\nT:Tune {x}\nM:4/4\nL:1/8\nK:G\nGABc dedB|dedB dedB|c2ec B2dB|c2A2 A4|\n"
    text = tune.format(x=1) + "\nX:2\nT:Only words\nK:G\n\n" + tune.format(x=3)
    path = tmp_path / "reels" / "book.abc"
    path.parent.mkdir()
    path.write_text(text)
    tokenizer = make_tokenizer("events", ["reels"])
    out = parse_files(
        pa.table({"path": [str(path)]}),
        filesystem=pafs.LocalFileSystem(),
        tokenizer_config=tokenizer.to_dict(),
        file_info={str(path): ("reels", piece_of(str(path)))},
        uri_prefix="",
        min_notes=8,
        head_notes=16,
    ).to_pylist()
    good = [r for r in out if r["error_kind"] is None]
    bad = [r for r in out if r["error_kind"] is not None]
    assert len(good) == 2 and good[0]["title"] == "Tune 1"
    assert [r["source_uri"] for r in bad] == [f"{path}#X2"]


def test_each_tune_is_labelled_with_its_written_form_for_the_styles_form_mix(tmp_path):
    """A tune with two repeated strains is AABB in 4-bar sections; one without repeats is through-composed."""
    abc = ("X:1\nT:Two strains\nM:4/4\nL:1/8\nK:D\n|:DFAF dFAF|GBdB gBdB|Acec aece|d2f2 d4:|\n"
           "|:f2ed cBAG|FGAB c2A2|Bcde fedc|d8:|\n\n"
           "X:2\nT:Through\nM:4/4\nL:1/8\nK:G\nGABc dedB|dedB dedB|c2ec B2dB|c2A2 A4|\n")
    path = tmp_path / "reels" / "book.abc"
    path.parent.mkdir()
    path.write_text(abc)
    tokenizer = make_tokenizer("events", ["reels"])
    out = parse_files(pa.table({"path": [str(path)]}), filesystem=pafs.LocalFileSystem(),
                      tokenizer_config=tokenizer.to_dict(), file_info={str(path): ("reels", piece_of(str(path)))},
                      uri_prefix="", min_notes=8, head_notes=16).to_pylist()
    assert {r["title"]: r["form"] for r in out} == {"Two strains": "AABB:4", "Through": "none"}
    # the strains' returns repeat their bars (bar<source); the through-composed tune none
    assert {r["title"]: r["copies"] for r in out} == {"Two strains": "4<0 5<1 6<2 7<3 12<8 13<9 14<10 15<11",
                                                      "Through": ""}
    # their lengths after a pickup, drawn with their copies: 16 bars repeats expanded, and 4
    assert {r["title"]: r["whole_bars"] for r in out} == {"Two strains": 16, "Through": 4}
    upbeat = abc.replace("K:G\nGABc dedB|", "K:G\nz4 dedB|")  # the same tune with its first half-bar a rest
    path.write_text(upbeat)
    out = parse_files(pa.table({"path": [str(path)]}), filesystem=pafs.LocalFileSystem(),
                      tokenizer_config=tokenizer.to_dict(), file_info={str(path): ("reels", piece_of(str(path)))},
                      uri_prefix="", min_notes=8, head_notes=16).to_pylist()
    assert {r["title"]: r["whole_bars"] for r in out}["Through"] == 3
