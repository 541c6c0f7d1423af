#!/usr/bin/env bash
# Every test of the project, in the order a failure is cheapest to find:
# Python env (cached) -> type-check -> the package as users get it (npm pack, installed into a
# throwaway TypeScript and JavaScript app: tsc, synth, nag packs, cfn-lint; ~1-2 min with a warm npm
# cache; then the Python wheel from the same build, in a cached virtualenv: a Python app, synth, nag
# packs) -> jest (constructs, nag packs, local state machine, CLI on moto) -> synth of the app ->
# cfn-lint over every synthesized template -> pytest (trainer).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=$(bash scripts/python-env.sh)
export TUNEYARD_VENV="$venv"
export PATH="$venv/bin:$PATH"

echo "== typecheck"
npx tsc --noEmit

echo "== consumer (npm pack + a throwaway app)"
node test/consumer/run.js

echo "== python consumer (the jsii wheel of the build npm pack just made)"
TUNEYARD_SKIP_BUILD=1 bash test/consumer-python/run.sh

echo "== jest"
npx jest --ci

echo "== synth + cfn-lint"
rm -rf test/.synth
npx cdk synth --quiet -o test/.synth/default
for config in test/fixtures/config/*.json; do
  name=$(basename "$config" .json)
  npx cdk synth --quiet -o "test/.synth/$name" -c "tuneyard:config=$config"
done
templates=(test/.synth/*/*.template.json)
echo "cfn-lint: ${#templates[@]} templates"
cfn-lint --config-file .cfnlintrc.yaml -- "${templates[@]}"

echo "== pytest"
if [ -d training-images/trainer/tests ]; then
  HF_HUB_OFFLINE=1 python -m pytest training-images/trainer/tests -q
fi
