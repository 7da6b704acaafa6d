"""The machine record of run reports and benchmarks (trans_encoder_core.machine)."""

from __future__ import annotations

import torch

from trans_encoder_core.machine import machine_info, parse_cpuinfo
from trans_encoder_core.runtime import cpu_has_native_bf16

# Abridged /proc/cpuinfo of two 2-core VMs that both say "AMD EPYC" (the flags lists cut short) and of
# an Intel machine with AMX.
ZEN4_CORE = """processor\t: {n}
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
stepping\t: 1
flags\t\t: fpu sse avx2 avx512f avx512bw avx512_bf16 avx512_vnni
"""
ZEN4 = ZEN4_CORE.format(n=0) + "\n" + ZEN4_CORE.format(n=1)  # one block per core, as Linux lists them
AVX2_ONLY = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 23
model\t\t: 49
model name\t: AMD EPYC
stepping\t: 0
flags\t\t: fpu sse avx avx2 fma
"""
INTEL_AMX = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
stepping\t: 8
flags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
"""


def test_parse_cpuinfo_tells_apart_cpus_with_the_same_name() -> None:
    zen4, older = parse_cpuinfo(ZEN4), parse_cpuinfo(AVX2_ONLY)
    assert zen4 == {
        "vendor": "AuthenticAMD",
        "model_name": "AMD EPYC",
        "family": 25,
        "model": 17,
        "stepping": 1,
        "flags": ["avx2", "avx512f", "avx512_bf16"],
    }
    assert older["model_name"] == zen4["model_name"]
    assert (older["family"], older["model"], older["flags"]) == (23, 49, ["avx2"])


def test_parse_cpuinfo_lists_amx_and_tolerates_missing_fields() -> None:
    intel = parse_cpuinfo(INTEL_AMX)
    assert intel["vendor"] == "GenuineIntel" and intel["model"] == 143
    assert intel["flags"] == ["avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"]
    assert parse_cpuinfo("") == {}
    # another architecture's fields (aarch64 names them differently): nothing invented
    assert parse_cpuinfo("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\n") == {}


def test_machine_info_agrees_with_torch_on_this_machine() -> None:
    info = machine_info()
    assert info["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["cpu_bf16_native"] == cpu_has_native_bf16()
    assert info["cores"] >= 1
    assert (info["gpu"] is None) == (not torch.cuda.is_available())
