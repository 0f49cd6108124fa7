"""The precisions a bundle can have and what each must meet against PyTorch FP32, read by the export's
validation and `sertrt parity`: fp32 (as exported), fp16 (FP32 islands), int8 (calibrated QDQ, for TensorRT)
and int8-dynamic (uncalibrated, for ONNX Runtime on CPU).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Limits:
    """Per precision. Validation: synthetic speech at untraced shapes, logits within atol + rtol * |ref| and
    top-1 agreement. Parity: real utterances, top-1 agreement and UA difference in points. A `gated`
    precision's export is refused unless the parity limits hold on real utterances. Only rows whose top-1
    margin is below 2 * (atol + rtol * |ref|) can flip within tolerance: the agreement limit counts those."""

    atol: float
    rtol: float
    validation_agreement: float
    parity_agreement: float
    max_delta_ua: float = 1.0
    gated: bool = False
    # ONNX Runtime session config entries of every CPU session of this precision: the same logits everywhere.
    ort_config: tuple[tuple[str, str], ...] = ()

    def validation(self) -> dict[str, Any]:
        """As the bundle card's validation record writes them."""
        return {"atol": self.atol, "rtol": self.rtol, "min_agreement": self.validation_agreement}

    def parity(self) -> dict[str, Any]:
        """As parity reports them."""
        return {"agreement": self.parity_agreement, "delta_ua": self.max_delta_ua}

    def parity_failures(self, agreement: float, delta_ua_points: float) -> list[str]:
        """What misses the parity limits, one phrase each (empty: passed)."""
        failures = []
        if not agreement >= self.parity_agreement:
            failures.append(f"top-1 agreement {agreement:.2%} < {self.parity_agreement:.2%}")
        if not abs(delta_ua_points) <= self.max_delta_ua:
            failures.append(f"|delta UA| {abs(delta_ua_points):.2f} points > {self.max_delta_ua}")
        return failures


LIMITS = {
    "fp32": Limits(atol=1e-4, rtol=1e-3, validation_agreement=1.0, parity_agreement=0.999),
    "fp16": Limits(atol=5e-2, rtol=5e-2, validation_agreement=0.99, parity_agreement=0.995),
    # int8's QDQ graph runs unfused on ONNX Runtime CPU: some versions fuse DQ -> MatMul -> Q into QLinearMatMul,
    # which takes no FP16 scales (refused on aarch64) or moves logits. TensorRT fuses the Q/DQ itself.
    # INT8: no rtol (logits have no natural scale); atol a few times the typical error, so only near-ties can flip.
    "int8": Limits(atol=0.2, rtol=0.0, validation_agreement=0.90, parity_agreement=0.98, gated=True,
                   ort_config=(("session.disable_quant_qdq", "1"),)),
    "int8-dynamic": Limits(atol=0.1, rtol=0.0, validation_agreement=0.90, parity_agreement=0.98, gated=True),
}
PRECISIONS = tuple(LIMITS)

# int8-dynamic's weights follow the CPU that runs them (export --cpu-target): VNNI, AMX and ARM's dot product
# multiply u8s8 exactly, so they take 8-bit weights; AVX2 sums u8s8 products in saturating 16-bit pairs, where
# ONNX Runtime's quantisation docs prescribe reduce_range (7-bit weights). vnni's artifact is arm64's too.
CPU_TARGETS = ("vnni", "avx2", "arm64")
DEFAULT_CPU_TARGET = "vnni"
_SAME_WEIGHTS = {"vnni": "s8", "arm64": "s8", "avx2": "s7"}


def host_cpu_target(cpuinfo: str | None = None, machine: str | None = None) -> str | None:
    """This host as a CPU target: arm64 (aarch64 with the dot product, asimddp), vnni (x86 with AVX-512 VNNI,
    AVX-VNNI or AMX), avx2, or None (none of these, or /proc/cpuinfo unreadable)."""
    machine = (machine or platform.machine()).lower()
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    flags = {f for line in cpuinfo.splitlines() if line.split(":")[0].strip() in ("flags", "Features")
             for f in line.split(":", 1)[1].split()}
    if machine in ("aarch64", "arm64"):
        return "arm64" if "asimddp" in flags else None
    if flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        return "vnni"
    return "avx2" if "avx2" in flags else None


def cpu_target_mismatch(target: str | None, host: str | None = None) -> str | None:
    """One line when a bundle made for `target` runs on a host whose INT8 kernels want other weights, else None."""
    host = host or host_cpu_target()
    if target is None or host is None or _SAME_WEIGHTS[target] == _SAME_WEIGHTS[host]:
        return None
    return (f"this int8-dynamic bundle was exported for --cpu-target {target}, this host is {host}: "
            f"re-export with --cpu-target {host} (the weights {target} takes are "
            f"{'slower and saturate here' if host == 'avx2' else 'reduced to 7 bits, less exact here'})")
