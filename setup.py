"""Builds the optional C scanner (``pitwall_rt/_row_scan.c``); the rest of the
package is described in pyproject.toml. Without a C compiler the build of
the extension is skipped and ingest uses its Python tiers only."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "pitwall_rt._row_scan",
            sources=["pitwall_rt/_row_scan.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
            optional=True,
        )
    ]
)
