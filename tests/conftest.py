"""Shared test configuration.

Hypothesis runs derandomized under the ``ci`` profile (selected by HYPOTHESIS_PROFILE=ci,
which .ci/run sets) so a CI failure is reproducible; locally the ``dev`` profile
explores new examples on each run.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "dev", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def copy_golden_cases(directory, case_ids, *, seal=True):
    """Copy the bundled suite's cases ``case_ids`` into ``directory`` as a suite of their own.

    The subset's manifest is sealed (a new, legitimately derived suite) unless ``seal`` is
    False. Returns the manifest. Tests may damage the copy; the bundled files are never
    touched.
    """
    import shutil

    from pnref.golden import bundled_suite_dir
    from pnref.golden.format import read_manifest, seal_manifest, write_manifest

    manifest = read_manifest(bundled_suite_dir())
    manifest["cases"] = [c for c in manifest["cases"] if c["id"] in case_ids]
    assert sorted(c["id"] for c in manifest["cases"]) == sorted(case_ids)
    for case in manifest["cases"]:
        shutil.copy(bundled_suite_dir() / case["file"], directory / case["file"])
    write_manifest(directory, seal_manifest(manifest) if seal else manifest)
    return manifest
