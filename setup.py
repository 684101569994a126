"""Build hook for dignity's compiled parts: the PDQ index kernels, the derivative shortlist and
the region proposals' separator runs (plain C, no numpy).

Everything else about the package lives in pyproject.toml; setuptools reads both, and an editable
install (``pip install -e .``) compiles the extension in place.
"""

import os
import platform
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# x86-64-v2 (POPCNT, SSE4.2; every x86-64 CPU since about 2009) is the baseline the kernels are
# tuned for: without POPCNT gcc emits a slow bit-twiddling popcount, which is most of the
# verification work. Never -march=native: a wheel or a shared venv may run on another CPU.
X86_FLAG_SETS = (["-march=x86-64-v2"], ["-mpopcnt"], [])
CFLAGS = ["-O3", "-std=c11", "-fno-strict-aliasing"]


class BuildExt(build_ext):
    """Use the first x86 flag set the compiler accepts (older gcc lacks ``x86-64-v2``)."""

    def build_extensions(self) -> None:
        extra: list[str] = []
        if platform.machine() in ("x86_64", "AMD64") and self.compiler.compiler_type == "unix":
            for flags in X86_FLAG_SETS:
                if self._accepts(flags):
                    extra = flags
                    break
        for ext in self.extensions:
            ext.extra_compile_args = [*ext.extra_compile_args, *extra]
        super().build_extensions()

    def _accepts(self, flags: list[str]) -> bool:
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "probe.c")
            with open(src, "w") as f:
                f.write("int probe(unsigned long long x) { return __builtin_popcountll(x); }\n")
            try:
                self.compiler.compile([src], output_dir=tmp, extra_postargs=flags)
            except Exception:
                return False
        return True


setup(
    ext_modules=[
        Extension(
            "dignity.matching._mihcore",
            ["src/dignity/matching/_mihcore.c"],
            extra_compile_args=CFLAGS,
        ),
        Extension(
            "dignity.derivatives._shortlist",
            ["src/dignity/derivatives/_shortlist.c"],
            extra_compile_args=CFLAGS,
        ),
        Extension(
            "dignity._regioncore",
            ["src/dignity/_regioncore.c"],
            extra_compile_args=CFLAGS,
            libraries=["m"],
        ),
    ],
    cmdclass={"build_ext": BuildExt},
)
