"""Edge ingest: broker events -> inbox (dedup by id) -> tickets, then an ack to the edge."""
