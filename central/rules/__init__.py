"""Central's rules runtime: the planners' rule files (``fieldloop.rules``) compiled to
durable-rules rulesets (``compile``) and evaluated in a supervised worker process (``worker``).
The pure-Python reference evaluator (``fieldloop.rules.evaluate``) stays the specification: a
differential test holds this runtime to it."""
