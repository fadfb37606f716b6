"""Where assets live: raw files on disk, clean and daily tables in DuckDB."""
