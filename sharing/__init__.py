"""The township side: matters catalogue, skip-check and township extracts."""

__all__: list[str] = []
