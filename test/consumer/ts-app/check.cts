// Synthesizes the consumer app into the folder given as the first argument and runs the four cdk-nag
// packs over it (the consumer's own cdk-nag, a peer of tuneyard's): exit 1 with every finding listed.
import { App } from 'aws-cdk-lib';
import { AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks, PCIDSS321Checks } from 'cdk-nag';
import { FineTuningTeamsStack } from './app.cjs';

const outdir = process.argv[2];
if (!outdir) throw new Error('usage: node check.cjs <output folder>');
// A fixed environment (no credentials, no lookups), and no asset bundling at synth.
const app = new App({ outdir, context: { 'aws:cdk:bundling-stacks': [] } });
const stack = new FineTuningTeamsStack(app, 'FineTuningTeams', { env: { account: '111122223333', region: 'eu-west-1' } });
const packs = [new AwsSolutionsChecks(app), new HIPAASecurityChecks(app), new NIST80053R5Checks(app), new PCIDSS321Checks(app)];
const findings = packs.flatMap((pack) =>
  pack.validateScope(stack).violations.flatMap((v) => v.violatingResources.map((r) => `${v.ruleName} at ${r.resourceLogicalId ?? r.locations.join(',')}: ${v.description}`)),
);
const template = app.synth().getStackByName(stack.stackName).template as { Resources: Record<string, { Type: string }> };
// The composition this app claims: two pipelines and registries, two endpoints, one dashboard and
// one set of alarms over all of it, and no bucket, key or VPC of its own (all three are imported).
const count = (type: string) => Object.values(template.Resources).filter((r) => r.Type === type).length;
const expected: Record<string, number> = {
  'AWS::StepFunctions::StateMachine': 2,
  'AWS::SageMaker::ModelPackageGroup': 2,
  'AWS::SageMaker::Endpoint': 2,
  'AWS::CloudWatch::Dashboard': 1,
  'AWS::S3::Bucket': 0,
  'AWS::EC2::VPC': 0,
};
const wrong = Object.entries(expected).filter(([type, n]) => count(type) !== n).map(([type, n]) => `${type}: ${count(type)}, expected ${n}`);
const failureAlarms = Object.keys(template.Resources).filter((id) => template.Resources[id].Type === 'AWS::CloudWatch::Alarm' && /RunsFailed/.test(id));
if (failureAlarms.length !== 2) wrong.push(`run-failure alarms: ${failureAlarms.join(', ') || 'none'}, expected one per pipeline`);
if (wrong.length > 0) {
  console.error(`the consumer app's template is not the composition it claims:\n  ${wrong.join('\n  ')}`);
  process.exit(1);
}
if (findings.length > 0) {
  console.error(`cdk-nag: ${findings.length} unacknowledged findings in the consumer app:\n  ${findings.join('\n  ')}`);
  process.exit(1);
}
console.log(`cdk-nag: 4 packs, no findings; synthesized ${stack.stackName} into ${outdir}`);
