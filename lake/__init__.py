"""The lake: landing a batch (the unit of work), the Parquet lake, quarantine, deletions,
runs and their recovery, and the audit of the lake against the catalog."""

__all__: list[str] = []
