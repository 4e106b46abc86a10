#!/usr/bin/env bash
# The plugin SDK end to end against a `cmake --install` prefix (ctest "plugin SDK: ..."; tests/CMakeLists.txt):
# install the build tree into a temporary prefix, then skeleton_sweep.sh with that prefix and its bin/vidkv (the
# skeleton built out of tree, the refusal without --allow-plugins, a YAML sweep, `vidkv plugins check`).
# The same check against a pip-installed VidKV: pip_install.sh (run by CI after scripts/test.sh, .ci/run).
# Usage: out_of_tree_plugin.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"
mkdir "$work/check"

cmake --install "$build" --prefix "$prefix" >/dev/null
bash "$src/tests/plugin_sdk/skeleton_sweep.sh" "$prefix" "$prefix/bin/vidkv" "$src" "$work/check"
echo "plugin SDK: install, out-of-tree build, YAML load, sweep and conformance check passed"
