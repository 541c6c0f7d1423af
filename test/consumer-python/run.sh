#!/usr/bin/env bash
# The Python consumer test: builds the package (jsii) and its wheel (jsii-pacmak), installs the wheel
# into a virtualenv with aws-cdk-lib's, constructs' and cdk-nag's Python packages, and runs app.py
# (synth + the four cdk-nag packs; any finding fails), then cfn-lint over its templates.
# The virtualenv is built once per requirements.txt (keyed by its hash, outside the clone).
# TUNEYARD_SKIP_BUILD=1: dist/ and .jsii are fresh (scripts/test-all.sh: npm pack just built them);
# TUNEYARD_SKIP_PACMAK=1 reuses the wheel already in dist-pacmak/python.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/test/consumer-python"
cd "$root"
now() { date +%s%N; }
took() { local ms=$((($(now) - $2) / 1000000)); printf '%s: %d.%d s\n' "$1" $((ms / 1000)) $((ms % 1000 / 100)); }

if [ "${TUNEYARD_SKIP_BUILD:-}" != 1 ]; then
  t=$(now); npm run --silent build; took "jsii compile + bundles" "$t"
fi
if [ "${TUNEYARD_SKIP_PACMAK:-}" != 1 ]; then
  t=$(now); rm -rf dist-pacmak/python; npx jsii-pacmak --targets python; took "jsii-pacmak (python)" "$t"
fi
wheel=$(ls dist-pacmak/python/tuneyard-*.whl)
echo "wheel: $wheel ($(du -k "$wheel" | cut -f1) KiB)"

key=$( (cat "$here/requirements.txt"; python3 --version) | sha256sum | cut -c1-16)
base=${TUNEYARD_VENV_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/tuneyard}
venv="$base/consumer-python-$key"
mkdir -p "$base"
exec 9>"$base/.lock-consumer-python-$key"
flock 9
t=$(now)
if [ ! -f "$venv/.complete" ]; then
  echo "consumer venv: building $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  touch "$venv/.complete"
fi
# The wheel changes with every build: replace it, without touching the pinned packages, then check
# that they satisfy what the wheel requires.
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --force-reinstall "$wheel"
"$venv/bin/pip" check --disable-pip-version-check
took "consumer venv" "$t"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
t=$(now)
"$venv/bin/python" "$here/app.py" "$out" "$root/cdk.json"
took "python app: synth + cdk-nag" "$t"
# cfn-lint (AWS's linter, in the project's test virtualenv) over what the Python app synthesized.
# W3010 (hard-coded availability zones) is expected here: the app fixes its region, and PlaneNetwork then
# names <region>a and <region>b (it never looks zones up at synth).
t=$(now)
"$(bash "$root/scripts/python-env.sh")/bin/cfn-lint" --config-file "$root/.cfnlintrc.yaml" --ignore-checks W3005 W3010 -- "$out"/*.template.json
took "cfn-lint" "$t"
