"""Application services: domain rules applied to storage inside one transaction each."""
