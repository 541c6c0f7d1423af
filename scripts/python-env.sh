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
# WordNet 3.0 for the meteor grader (tuneyard_trainer/graders.py, wordnet()): Debian/Ubuntu's wordnet-base package,
# as the trainer image installs it (NLTK never downloads it). Quick when present; a no-op when TUNEYARD_WORDNET
# names another copy. apt-get's output is shown only when it fails: stdout is the venv's path only.
if [ -z "${TUNEYARD_WORDNET:-}" ] && [ ! -f /usr/share/wordnet/data.noun ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "python-env: installing wordnet-base (WordNet 3.0, for the meteor grader)" >&2
    export DEBIAN_FRONTEND=noninteractive
    install="apt-get install -y -qq --no-install-recommends wordnet-base"
    if ! log=$($install 2>&1) && ! log=$({ apt-get update -qq && $install; } 2>&1); then
      printf '%s\n' "$log" >&2
      echo "python-env: could not install wordnet-base (above); the meteor grader's tests fail until it is installed" >&2
    fi
  else
    echo "python-env: /usr/share/wordnet is missing: run 'sudo apt-get install wordnet-base' (or set TUNEYARD_WORDNET to WordNet 3.0's dict folder); the meteor grader's tests need it" >&2
  fi
fi
echo "$venv"
