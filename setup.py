"""Builds the two optional C extensions of ingest: the JSON scanner
(``pitwall_rt/_row_scan.c``) and the UDP drain (``pitwall_rt/ingest/_drain.c``).
The rest of the package is described in pyproject.toml. Without a C
compiler their build is skipped and ingest does their work in Python."""

from setuptools import Extension, setup

FLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers"]

setup(
    ext_modules=[
        Extension(
            "pitwall_rt._row_scan",
            sources=["pitwall_rt/_row_scan.c"],
            extra_compile_args=FLAGS,
            optional=True,
        ),
        Extension(
            "pitwall_rt.ingest._drain",
            sources=["pitwall_rt/ingest/_drain.c"],
            extra_compile_args=FLAGS,
            optional=True,
        ),
    ]
)
