"""The benchmark's shared machinery: entry point, cell pipeline, engine, metrics, cache, records."""
