"""The provenance record (issue #21 item 4): ``musicgen generate``'s JSON, a Serve response and a bulk
manifest record, built in-process from the same generator and request, say the same of how the melody
was made. No Ray is started: the bulk record comes from ``Job.record`` and the actor's row code."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import fields
from types import SimpleNamespace

import pyarrow as pa
import pytest

from musicgen.config import BulkConfig
from musicgen.sampling import MelodyGenerator, SampleRequest
from musicgen.sampling.provenance import (
    BULK_FIELDS,
    CLI_FIELDS,
    SERVE_FIELDS,
    Provenance,
    melody_meta,
    provenance,
)

SETTINGS = {"bars": 4, "temperature": 0.9, "top_k": 7, "top_p": 0.95, "guidance": 1.0}


@pytest.fixture(scope="module")
def generator(tiny_artifact):
    return MelodyGenerator.from_artifact(tiny_artifact, device="cpu", precision="fp32")


def _cli_meta(generator, request, tmp_path) -> dict:
    from musicgen.sampling.cli_generate import generate_files

    (made,) = generate_files(generator, [request], str(tmp_path), ["json"])
    return json.loads((tmp_path / f"{made.stem}.json").read_text())["meta"]


def _serve_out(generator, generated) -> dict:
    from musicgen.serving.app import render

    return render(generated, ("abc",), generator, batch_size=1).model_dump()


def _bulk_record(generator, generated, tmp_path) -> dict:
    """The manifest record the bulk driver writes for the melody, from the row an actor makes of it."""
    from musicgen.catalog.acceptance import StyleCatalog
    from musicgen.catalog.bulk import Job
    from musicgen.catalog.generate import CatalogGenerator
    from musicgen.catalog.progress import Progress
    from musicgen.evaluation.novelty import IntervalIndex

    style, seed = generated.request.style, generated.request.seed
    config = BulkConfig(model="m", out=str(tmp_path / "catalog"), per_style=1, styles=(style,), seed=seed,
                        formats=("abc",), precision=generator.precision, min_notes=0,
                        **{k: v for k, v in SETTINGS.items() if k != "guidance"}, guidance=SETTINGS["guidance"])
    job = Job.__new__(Job)
    job.config, job.generator, job.guidance = config, generator, SETTINGS["guidance"]
    actor = CatalogGenerator("m", "cpu", config.precision, None, job.sampling(), config.formats,
                             loader=lambda *a, **k: generator)
    actor.reference = IntervalIndex()
    made = actor._row(generated.request, generated, generator.verdict(generated.melody, style))
    # as the driver reads a block: through the actor's schema, the files apart from the row
    (row,) = pa.Table.from_pylist([made], schema=actor.schema).drop_columns(list(config.formats)).to_pylist()
    job.progress = Progress({}, {style: 0}, {style: None})
    job.catalogs = {style: StyleCatalog(config.near_duplicate_threshold)}
    written = []
    job.decide_ready(style, deque([seed]), {seed: (row, {})}, SimpleNamespace(submit=lambda r, f: written.append(r)),
                     SimpleNamespace(update=lambda n: None))
    (record,) = written
    assert record == {k: v for k, v in job.record(row).items() if k != "pitches"}
    return record


def test_generate_serve_and_bulk_record_the_same_provenance(generator, tmp_path):
    request = SampleRequest("german_folk", 11, **SETTINGS)
    (generated,) = generator.generate([request])
    made = provenance(generator, generated.request)
    assert made.as_dict() == {
        "model_id": "tiny-lstm", "model_version": generator.model_version, "model_name": "lstm",
        "style": "german_folk", "seed": 11, "bars": 4, "temperature": 0.9, "top_k": 7, "top_p": 0.95,
        "guidance": 1.0, "precision": "fp32", "primer_notes": 0}

    cli = _cli_meta(generator, request, tmp_path)
    serve = _serve_out(generator, generated)
    bulk = _bulk_record(generator, generated, tmp_path)

    # each output's provenance fields are the record's, under the output's own names
    assert {k: cli[k] for _, k in CLI_FIELDS if k in cli} == made.subset(CLI_FIELDS)  # no form: none recorded
    assert {k: serve[k] for _, k in SERVE_FIELDS if serve[k] is not None} == made.subset(SERVE_FIELDS)
    assert {k: bulk[k] for _, k in BULK_FIELDS} == made.subset(BULK_FIELDS)

    # and the fields they share agree across the three
    for name in ("model_id", "model_version", "guidance"):
        assert cli[name] == serve[name] == bulk[name] == getattr(made, name), name
    assert cli["model"] == serve["model_name"] == bulk["model_name"] == made.model_name
    for name in ("style", "seed"):
        assert cli[name] == serve[name] == bulk[name] == getattr(made, name), name
    for name in ("temperature", "top_k", "top_p"):
        assert cli[name] == bulk[name] == getattr(made, name), name
    assert cli["bars"] == serve["bars"] == made.bars  # requested; a bulk record's bars are the melody's own
    assert bulk["bars"] == generated.melody.n_bars
    assert bulk["precision"] == generator.precision


def test_the_melody_carries_the_requests_part_of_the_record(generator):
    (generated,) = generator.generate([SampleRequest("irish_folk", 3, bars=2, program=41, tempo=100.0)])
    assert generated.melody.meta == melody_meta(generated.request, 41)
    made = provenance(generator, generated.request)
    assert {k: generated.melody.meta[k] for k in ("style", "seed", "bars", "guidance")} == {
        k: getattr(made, k) for k in ("style", "seed", "bars", "guidance")}


def test_optional_settings_are_recorded_only_where_set(generator):
    from musicgen.music.melody import Melody, Note

    optional = {"key", "time_signature", "tempo", "program", "form", "section_bars", "variation", "loop"}
    bare = provenance(generator, SampleRequest("irish_folk", 1, guidance=1.0)).as_dict()
    assert not optional & set(bare)
    assert not optional & set(provenance(generator, SampleRequest("irish_folk", 1, guidance=1.0)).subset(CLI_FIELDS))
    primer = Melody(notes=(Note(60, 0, 12), Note(62, 12, 12)), time_signature=(6, 8))
    full = provenance(generator, SampleRequest("irish_folk", 1, bars=12, guidance=1.0, key="D minor", tempo=96.0,
                                               program=41, time_signature=(6, 8), primer=primer, form="ABA",
                                               section_bars=4, variation=0.25, loop=True),
                      precision="int8").as_dict()
    assert {k: full[k] for k in ("key", "time_signature", "tempo", "program", "primer_notes", "precision", "form",
                                 "section_bars", "variation", "loop")} == {
        "key": "D minor", "time_signature": "6/8", "tempo": 96.0, "program": 41, "primer_notes": 2,
        "precision": "int8", "form": "ABA", "section_bars": 4, "variation": 0.25, "loop": True}
    assert list(full) == [f.name for f in fields(Provenance)]  # declaration order


def test_an_unresolved_guidance_is_refused(generator):
    with pytest.raises(ValueError, match="resolve the request's guidance"):
        provenance(generator, SampleRequest("irish_folk", 1))


def test_every_output_names_only_record_fields():
    known = {f.name for f in fields(Provenance)}
    for names in (CLI_FIELDS, SERVE_FIELDS, BULK_FIELDS):
        assert {name for name, _ in names} <= known


def test_a_formed_melody_records_its_form_in_the_cli_json_and_the_serve_response(generator, tmp_path):
    request = SampleRequest("german_folk", 3, bars=6, form="ABA", section_bars=2, variation=0.5, guidance=1.0)
    (generated,) = generator.generate([request])
    asked = {"form": "ABA", "section_bars": 2, "variation": 0.5}
    cli, serve = _cli_meta(generator, request, tmp_path), _serve_out(generator, generated)
    assert {k: cli[k] for k in asked} == {k: serve[k] for k in asked} == asked
    assert serve["bars"] == cli["bars"] == 6 and "loop" not in cli and serve["loop"] is None
    looped = SampleRequest("german_folk", 3, bars=4, loop=True, guidance=1.0)
    (generated,) = generator.generate([looped])
    assert _cli_meta(generator, looped, tmp_path)["loop"] is True and _serve_out(generator, generated)["loop"] is True
    assert generated.melody.meta["loop"] is True
