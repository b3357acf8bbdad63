"""The township side: matters catalogue, skip-check and township extracts."""
