#!/usr/bin/env node
import { App } from 'aws-cdk-lib';
import { loadPlaneConfig } from '../lib/config';
import { FineTuningPlaneStack } from '../lib/fine-tuning-plane-stack';
import { addCompliancePacks } from '../lib/nag';

const app = new App();
const config = loadPlaneConfig((key) => app.node.tryGetContext(key));
new FineTuningPlaneStack(app, config.stackName ?? 'Tuneyard', {
  config,
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});
addCompliancePacks(app);
