"""What machine a run computed on, for reports and benchmarks: timings mean little without it.

Two machines that both call themselves "AMD EPYC" under a hypervisor measured 1.5x apart on the same
cold demo (README, "Use it"): their bf16 matrix throughput differed (410 against 645-730 GFLOP/s on
2048x2048 products), and only the CPU family and model numbers, which /proc/cpuinfo keeps when the
model name is masked, tell them apart. The vector instruction set torch dispatches to and whether
bf16 is native decide both speed and, for float32 rounding, the bytes a stage writes (README,
Guarantees), so they are recorded too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")
# Flags that change what this project computes or how fast: bf16 and AMX matrix units, AVX-512.
_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """The first processor's vendor, family, model, stepping, model name and notable flags.

    Args:
        text: the contents of /proc/cpuinfo (Linux; x86 field names).

    Returns:
        A dict with the keys present in `text` among `vendor`, `family`, `model`, `stepping` (ints
        where numeric), `model_name`, and `flags` (the notable ones it lists, in a fixed order).
    """
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor block is enough: all cores of a VM report the same
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    out: dict[str, Any] = {}
    for key, name in (("vendor", "vendor_id"), ("model_name", "model name")):
        if fields.get(name):
            out[key] = fields[name]
    for key, name in (("family", "cpu family"), ("model", "model"), ("stepping", "stepping")):
        value = fields.get(name, "")
        if value:
            out[key] = int(value) if value.isdigit() else value
    if "flags" in fields:
        present = set(fields["flags"].split())
        out["flags"] = [f for f in _FLAGS if f in present]
    return out


def machine_info() -> dict[str, Any]:
    """This machine as a run report records it: CPU identity, the cores this process may use, the
    instruction set torch dispatches to, whether bf16 is native, and the GPU when there is one."""
    import torch

    from trans_encoder_core.runtime import cpu_has_native_bf16

    try:
        cpu = parse_cpuinfo(CPUINFO.read_text())
    except OSError:  # not Linux
        cpu = {}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "cores": cores,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16_native": cpu_has_native_bf16(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
