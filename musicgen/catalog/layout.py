"""The files of a catalog folder, as the bulk job writes them and the studio reads them (no heavy imports)."""

PROGRESS, MANIFEST, REJECTED, SUMMARY = "progress.json", "manifest.parquet", "rejected.parquet", "summary.json"
