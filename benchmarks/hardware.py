"""What a benchmark ran on, in one line: CPU model and cores, GPU (nvidia-smi), Python."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def gpu_names() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "none"
    return "; ".join(out.stdout.strip().splitlines()) if out.returncode == 0 and out.stdout.strip() else "none"


def describe() -> str:
    return f"CPU {cpu_model()}, {os.cpu_count()} logical cores; GPU {gpu_names()}; Python {platform.python_version()}"
