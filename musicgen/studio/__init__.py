"""The catalog studio: library editors audition, filter, rate and keep a bulk catalog's melodies.

``musicgen studio --catalog URI`` serves :mod:`musicgen.studio.app` over the catalog
(:mod:`musicgen.studio.catalog`) with the decisions in SQLite (:mod:`musicgen.studio.store`).
"""

from __future__ import annotations

from musicgen import storage

REVIEWS_FILE = "reviews.sqlite"


def default_database(catalog_uri: str) -> str:
    """Reviews live beside a local catalog; an s3:// catalog needs a database named with --db."""
    if "://" in catalog_uri and not catalog_uri.startswith("file://"):
        raise ValueError(f"{catalog_uri} is not a local folder: give --db sqlite:///path/to/reviews.sqlite")
    return storage.join(storage.absolute(catalog_uri), REVIEWS_FILE).removeprefix("file://")


def serve_studio(catalog_uri: str, db: str | None = None, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve the studio until Ctrl-C."""
    import uvicorn

    from musicgen.studio.app import create_app
    from musicgen.studio.catalog import Catalog
    from musicgen.studio.store import ReviewStore

    catalog = Catalog(catalog_uri)
    store = ReviewStore(db or default_database(catalog_uri))
    print(f"musicgen studio: {len(catalog)} melodies of {catalog.uri}, reviews in {store.path}", flush=True)
    print(f"open http://{host}:{port}/ (API docs at /docs); Ctrl-C stops it", flush=True)
    uvicorn.run(create_app(catalog, store), host=host, port=port, log_level="warning")
