import { Match, Template } from 'aws-cdk-lib/assertions';
import { complianceFindings } from '../support/app';
import { pipelineStack } from './pipeline-stack';

/** The statements of the policies attached to the role whose logical id matches `role`. */
function statementsOf(template: Template, role: RegExp): any[] {
  const policies = template.findResources('AWS::IAM::Policy');
  return Object.values(policies)
    .filter((p: any) => p.Properties.Roles.some((r: any) => role.test(r.Ref)))
    .flatMap((p: any) => p.Properties.PolicyDocument.Statement);
}
/** A resource's key pattern in the data bucket (`eval-reports/*\/graders.json`), or the resource as JSON. */
const keyOf = (resource: unknown) => JSON.stringify(resource).replace(/^.*"\/([^"]*)"\]\]}$/, '$1');

describe("the run's graders.json (PlanRun writes it, the evaluation job reads it as its graders channel)", () => {
  // GIVEN the pipeline with the real constructs around it
  const { stack, store } = pipelineStack();
  const template = Template.fromStack(stack);

  test('PlanRun may put graders.json under eval-reports/ and no other object, and encrypt it with the store key', () => {
    const statements = statementsOf(template, /^PipelinePlanRunFunctionRole/);
    // (its reads: the tokenizer.json files of a run's models, test/pipeline/fine-tuning-pipeline.test.ts)
    const s3 = statements.filter((s) => JSON.stringify(s.Action).includes('s3:') && !/s3:(Get|List)/.test(JSON.stringify(s.Action)));
    expect(s3).toHaveLength(1);
    expect(s3[0].Action).toBe('s3:PutObject');
    expect([s3[0].Resource].flat().map(keyOf)).toEqual(['eval-reports/*/graders.json']);
    const kms = statements.filter((s) => JSON.stringify(s.Action).includes('kms:GenerateDataKey'));
    // one statement with kms:Decrypt, which reading the models' tokenizer.json needs
    expect(kms).toEqual([expect.objectContaining({ Action: ['kms:Decrypt', 'kms:GenerateDataKey'], Resource: { 'Fn::GetAtt': [expect.stringMatching(/^StoreKey/), 'Arn'] } })]);
    expect(store.encryptionKey).toBeDefined();
  });

  test('the jobs may get graders.json under eval-reports/, and read nothing else there', () => {
    const statements = statementsOf(template, /^JobsRole/);
    const reads = statements.filter((s) => [s.Action].flat().includes('s3:GetObject') && JSON.stringify(s.Resource).includes('eval-reports'));
    expect(reads.map((s) => [s.Action, [s.Resource].flat().map(keyOf)])).toEqual([['s3:GetObject', ['eval-reports/*/graders.json']]]);
  });

  test('passes the four compliance packs with no unacknowledged finding', () => {
    expect(complianceFindings(stack)).toEqual([]);
    template.hasResourceProperties('AWS::Lambda::Function', { Description: Match.stringLikeRegexp('plans the run') });
  });
});
