"""Build the C reference (firmware_bridge/c/) into a temporary folder, as CI does.

Why the tests compile it themselves: the C code is only worth something if it builds warning-free
with a plain C99 compiler and behaves like the Python firmware; building it here keeps the two
from drifting without a separate build step. Flags: C99, every warning an error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

C_DIR = Path(__file__).resolve().parents[2] / "firmware_bridge" / "c"
CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2")
# What each program is built from (relative to firmware_bridge/c/); the Makefile says the same.
SOURCES = {
    "h2o_fw_host": ("h2o_firmware.c", "host/sim_hal.c", "host/host_main.c"),
    "codec_tool": ("host/codec_tool.c",),
}


# The parts a board runs (codec header, firmware skeleton) also build with the warnings that
# catch what bites on an MCU: implicit narrowing, float promoted to double (no double FPU),
# shadowed names.
PORTABLE_SOURCES = ("h2o_firmware.c",)
PORTABLE_FLAGS = ("-Wconversion", "-Wdouble-promotion", "-Wshadow", "-Wcast-align")


@dataclass(frozen=True)
class CPrograms:
    h2o_fw_host: Path
    codec_tool: Path
    compiler: str


def find_compiler() -> str | None:
    """$CC, else gcc, else cc; None when the machine has no C compiler."""
    for name in (os.environ.get("CC"), "gcc", "cc"):
        if name and shutil.which(name):
            return name
    return None


def build(out_dir: Path, compiler: str) -> CPrograms:
    """Compile every program; raises with the compiler's output on any warning or error."""
    built = {}
    for name, sources in SOURCES.items():
        exe = out_dir / name
        cmd = [compiler, *CFLAGS, "-I", str(C_DIR), *(str(C_DIR / s) for s in sources), "-o", str(exe)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stdout}{result.stderr}")
        built[name] = exe
    return CPrograms(**built, compiler=compiler)


def compile_portable(out_dir: Path, compiler: str) -> subprocess.CompletedProcess:
    """Compile (no link) the board-side sources with CFLAGS + PORTABLE_FLAGS, in one call."""
    cmd = [compiler, *CFLAGS, *PORTABLE_FLAGS, "-I", str(C_DIR), "-c", *(str(C_DIR / s) for s in PORTABLE_SOURCES)]
    return subprocess.run(cmd, cwd=out_dir, capture_output=True, text=True, timeout=120)
