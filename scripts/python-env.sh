#!/usr/bin/env bash
# Creates (once) and prints the path of the Python virtualenv the tests use.
# The venv is keyed by the hash of every requirements file it is built from, so it is rebuilt only
# when a pin changes, and lives outside the clone so a fresh clone reuses it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
files=("$root/requirements-dev.txt" "$root/training-images/trainer/requirements-test.txt" "$root/training-images/trainer/requirements.txt")
key=$(cat "${files[@]}" | sha256sum | cut -c1-16)
base=${TUNEYARD_VENV_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/tuneyard}
venv="$base/venv-$key"
mkdir -p "$base"
# One build at a time: parallel jest workers (test/support/api-model.ts) may ask at once.
exec 9>"$base/.lock-$key"
flock 9
if [ ! -f "$venv/.complete" ]; then
  echo "python-env: building $venv (first run or changed pins)" >&2
  rm -rf "$venv"
  mkdir -p "$base"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/requirements-dev.txt" >&2
  touch "$venv/.complete"
fi
echo "$venv"
