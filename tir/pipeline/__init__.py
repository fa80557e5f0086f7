"""Raw annotations to Parquet manifests: one reader per raw format, synthetic data, the artifact store."""
