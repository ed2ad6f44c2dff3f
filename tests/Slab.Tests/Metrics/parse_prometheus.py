"""Parses Prometheus text exposition (stdin) with the reference parser; prints its families as JSON.

Run with Debian's /usr/bin/python3 (package python3-prometheus-client): the python3 on PATH may be
another interpreter without it. A malformed exposition makes the parser raise: exit 1, the error on
stderr. Output: {"families": [{"name", "type", "help", "samples": [{"name", "labels", "value"}]}]}.
"""
import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    families = []
    for family in text_string_to_metric_families(sys.stdin.read()):
        families.append({
            "name": family.name,
            "type": family.type,
            "help": family.documentation,
            "samples": [
                {
                    "name": sample.name,
                    "labels": sample.labels,
                    # JSON has no infinities or NaN: those become strings.
                    "value": sample.value if math.isfinite(sample.value) else str(sample.value),
                }
                for sample in family.samples
            ],
        })
    json.dump({"families": families}, sys.stdout)


if __name__ == "__main__":
    main()
