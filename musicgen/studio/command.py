"""``musicgen studio``: its flags and what it runs (kept beside the studio, not in the CLI module)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "studio",
        help="a web page to audition, filter, rate and keep a bulk catalog's melodies",
        description=(
            "Serve the catalog studio for a folder `musicgen bulk` wrote: a page listing its melodies (filter and "
            "sort by style, key, meter, length, novelty, decision and rating), each playable (its WAV preview, "
            "rendered with FluidSynth when missing), shown as notation and as a piano roll, with approve / "
            "reject, a 1-5 rating, tags and a note, and keyboard shortcuts (j/k, space, a, r, 1-5). Decisions "
            "are kept in SQLite, beside a local catalog by default. The JSON API the page uses is documented at "
            "/docs. With MUSICGEN_API_TOKEN set, every change needs 'Authorization: Bearer <token>'. "
            "--export NAME copies the approved melodies to <catalog>/exports/NAME/ with their own manifest and exits."
        ),
    )
    p.add_argument("--catalog", required=True, help="catalog folder (with manifest.parquet), local or s3://")
    p.add_argument("--db", help="reviews database, sqlite:///path (default: <catalog>/reviews.sqlite; "
                                "needed for an s3:// catalog)")
    p.add_argument("--host", default="127.0.0.1", help="HTTP host (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="HTTP port (default: 8080)")
    p.add_argument("--export", metavar="NAME", help="export the approved melodies to <catalog>/exports/NAME/ and exit")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from musicgen import storage
    from musicgen.studio import default_database, serve_studio

    if args.export:
        from musicgen.studio.catalog import Catalog, export_approved
        from musicgen.studio.store import ReviewStore

        catalog = Catalog(args.catalog)
        store = ReviewStore(args.db or default_database(args.catalog))
        summary = export_approved(catalog, store.get_many(), storage.join(catalog.uri, "exports", args.export))
        print(f"exported {summary['melodies']} approved melodies to {summary['out']}")
        return 0
    serve_studio(args.catalog, args.db, args.host, args.port)
    return 0
