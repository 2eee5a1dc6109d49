"""Pieces the bench scripts share (they run as scripts, with bench/ on sys.path)."""

from __future__ import annotations

import json
import resource
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def raise_fd_limit(needed: int) -> None:
    """Raise this process's open-files limit as far as allowed (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        print(f"warning: fd limit {target} < {needed}; raise `ulimit -Hn`", file=sys.stderr)


def write_report(
    report: dict[str, Any],
    *,
    out: Path | None,
    plot: Callable[[dict[str, Any], Path], None] | None,
    default_out: Path,
) -> None:
    """Write the JSON report (`--out`), its chart (`--plot`), then print it as the last line."""
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
    if plot is not None:
        plot(report, (out or default_out).with_suffix(".png"))
    print(json.dumps(report))
