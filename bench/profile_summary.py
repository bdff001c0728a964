"""Summarise a py-spy speedscope profile: busy share per thread, top functions.

py-spy (without ``--idle``) keeps only samples where a thread was running Python code or
waiting on the GIL, so a thread's sample count over ``duration x rate`` is how busy it was.

    python -m bench.profile_summary operator.speedscope.json --rate 50 --top 30
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any


def _label(frame: dict[str, Any]) -> str:
    file = frame.get("file") or ""
    for marker in ("site-packages/", "/operator/", "/lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{frame.get('name', '?')} ({file}:{frame.get('line', '?')})"


def summarise(path: Path, rate: float, top: int, match: str | None = None) -> str:
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    lines: list[str] = []
    threads: Counter[str] = Counter()
    inclusive: Counter[int] = Counter()
    self_time: Counter[int] = Counter()
    ours: Counter[int] = Counter()
    total = 0
    duration = 0.0
    for profile in data["profiles"]:
        samples = profile.get("samples", [])
        weights = profile.get("weights") or [1] * len(samples)
        name = profile.get("name", "?")
        kind = "event loop" if "MainThread" in name or "thread 1 " in name else name
        kind = "barbeque-io pool" if "barbeque-io" in name else kind
        duration = max(duration, float(profile.get("endValue", 0)) / rate)
        for stack, weight in zip(samples, weights, strict=False):
            if match and not any(match in _label(frames[i]) for i in stack):
                continue
            threads[kind] += weight
            total += weight
            for index in set(stack):
                inclusive[index] += weight
            if stack:
                self_time[stack[-1]] += weight
                # the innermost frame of the project's own code in this stack
                for index in reversed(stack):
                    file = frames[index].get("file") or ""
                    if "/barbeque/" in file:
                        ours[index] += weight
                        break
    lines.append(f"{path}: {total} samples at {rate:g} Hz")
    lines.append("")
    lines.append("samples by thread (a busy thread gets rate x seconds samples):")
    for kind, count in threads.most_common():
        lines.append(f"  {count:9.0f}  {100 * count / max(total, 1):5.1f} %  {kind}")

    def table(title: str, counter: Counter[int]) -> None:
        lines.append("")
        lines.append(title)
        for index, count in counter.most_common(top):
            lines.append(f"  {100 * count / max(total, 1):5.1f} %  {_label(frames[index])}")

    table("inclusive (share of all samples with the function on the stack):", inclusive)
    table("self (innermost frame):", self_time)
    table("innermost frame of barbeque's own code:", ours)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_summary", description=__doc__)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--rate", type=float, default=50.0, help="py-spy's --rate")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--match", help="only stacks with a frame containing this text")
    args = parser.parse_args(argv)
    sys.stdout.write(summarise(args.profile, args.rate, args.top, args.match))
    return 0


if __name__ == "__main__":
    sys.exit(main())
