#!/usr/bin/env bash
# The test command of README.md (and of CI): installs what is missing from Debian's packages,
# configures the `ci` preset (CUDA sm_90a when nvcc is present, host-only otherwise), builds with
# every core and runs ctest. GPU tests report "skipped" without a GPU; on a GPU machine run with
# MIXTAPE_REQUIRE_GPU=1 so that a missing GPU fails instead.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v cmake >/dev/null || need+=(cmake)
command -v ninja >/dev/null || need+=(ninja-build)
command -v g++ >/dev/null || need+=(g++)
[ -f /usr/include/catch2/catch.hpp ] || need+=(catch2)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi

preset=${MIXTAPE_PRESET:-ci}
cmake --preset "$preset"
cmake --build --preset "$preset" -j "$(nproc)"
ctest --preset "$preset" -j "$(nproc)"
