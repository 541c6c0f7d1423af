#!/usr/bin/env node
import { App } from 'aws-cdk-lib';
import { loadPlaneConfig } from '../lib/config';
import { FineTuningPlaneStack } from '../lib/fine-tuning-plane-stack';
import { addCompliancePacks } from '../lib/nag';

// CloudFormation's built-in template validation (WebAssembly, ~2.5 s per synth here) is off: the test
// command runs cfn-lint over every synthesized template instead, and the compliance packs run below.
const app = new App({ builtinCloudFormationValidation: false });
const config = loadPlaneConfig((key) => app.node.tryGetContext(key));
new FineTuningPlaneStack(app, config.stackName ?? 'Tuneyard', {
  config,
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});
addCompliancePacks(app);
