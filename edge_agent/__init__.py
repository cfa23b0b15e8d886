"""The edge agent: collectors -> decoding -> detectors -> outbox -> uplink.

Runs on site gateways; depends on ``fieldloop`` contracts only, never on ``central``.
"""
