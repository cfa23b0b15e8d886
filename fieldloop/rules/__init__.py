"""Planner rule files (rules/*.yaml): the closed condition language, the field registry, the
action vocabulary and the file schemas. Pure: loading and checking are in ``load`` and
``check``; evaluation in ``evaluate`` (the reference) and central's durable-rules runtime."""
