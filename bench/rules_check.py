"""How long `fieldloop rules check` takes on a 1,000-rule classification file, against the raw
limit of reading it: one YAML parse of the same file with the same parser (ruamel, round-trip,
which keeps the positions every error needs).

    .venv/bin/python bench/rules_check.py            # 1,000 rules, 5 runs
    .venv/bin/python bench/rules_check.py --rules 300 --runs 3
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from fieldloop.rules.check import check_file
from fieldloop.yamlfile import parse_yaml

WORDS = ["漏水", "渗水", "跳闸", "停电", "空调", "不制冷", "电梯", "困人", "门锁", "噪音"]
WORDS += ["leak", "burst", "tripped", "no power", "air con", "lift", "stuck", "lock", "smell"]
FIELDS = ["problem_type", "site", "asset.class", "fault.code"]


def make_file(n: int, seed: int = 1) -> str:
    rnd = random.Random(seed)
    lines = ["apiVersion: fieldloop/v1", "kind: ClassificationRules", "rules:"]
    for i in range(n - 1):
        words = ", ".join([*rnd.sample(WORDS, 3), f"kw{i}"])
        other = rnd.choice(FIELDS)
        lines += [
            f"  - id: rule-{i:04d}",
            f"    description: generated rule {i} / 规则 {i}",
            "    when:",
            "      any:",
            f"        - text: {{contains_any: [{words}]}}",
            f"        - {other}: {{in: [v{i}a, v{i}b]}}",
            "    then:",
            f"      - set_category: cat{i % 40}",
            f"      - set_queue: q{i % 12}",
            f"      - add_tags: [t{i % 7}]",
        ]
    lines += ["  - id: catch-all", "    then:", "      - set_category: general"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "classification.yaml"
        text = make_file(args.rules)
        path.write_text(text, encoding="utf-8")
        problems = check_file(path)
        assert not problems, problems[:3]  # the file is valid: the check does all its work
        ours, raw = [], []
        for _ in range(args.runs):
            t = time.perf_counter()
            check_file(path)
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            parse_yaml(path, path.read_text(encoding="utf-8"))
            raw.append(time.perf_counter() - t)
        o, r = statistics.median(ours), statistics.median(raw)
        print(f"rules check on {args.rules} rules ({len(text) / 1024:.0f} KiB), {args.runs} runs:")
        print(f"  fieldloop rules check    {o:7.3f} s (median; min {min(ours):.3f})")
        print(f"  one ruamel parse (limit) {r:7.3f} s (median; min {min(raw):.3f})")
        print(f"  ours / one parse: {o / r:.1f}x")


if __name__ == "__main__":
    main()
