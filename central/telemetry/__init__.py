"""The telemetry store: readings, their layout on each database, queries over them."""
