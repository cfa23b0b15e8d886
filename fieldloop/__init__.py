"""FieldLoop shared contracts: wire messages, topic scheme, file schemas and the one CLI.

This package depends on none of ``edge_agent``, ``central`` or ``simulators``; they depend on it.
"""

__version__ = "0.1.0"
