#!/usr/bin/env bash
# The test command of README.md (and of CI): installs what is missing from Debian's packages,
# configures the `ci` preset (CUDA sm_90a when nvcc is present, host-only otherwise), builds with
# every core and runs ctest. GPU tests report "skipped" without a GPU; on a GPU machine run with
# MIXTAPE_REQUIRE_GPU=1 so that a missing GPU fails instead.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh

preset=${MIXTAPE_PRESET:-ci}
cmake --preset "$preset"
cmake --build --preset "$preset" -j "$(nproc)"
ctest --preset "$preset" -j "$(nproc)"
