"""The lake (Parquet by dataset and township) and the catalog database (SQLAlchemy)."""
