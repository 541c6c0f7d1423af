import { Match, Template } from 'aws-cdk-lib/assertions';
import { DatasetStore } from '../../constructs/dataset-store';
import { FineTuningPipeline } from '../../constructs/fine-tuning-pipeline';
import { parsePlaneConfig } from '../../lib/config';
import { FineTuningPlaneStack } from '../../lib/fine-tuning-plane-stack';
import { complianceFindings, TEST_ENV, testApp, testStack } from '../support/app';
import { definitionFromTemplate } from '../support/local-sfn';
import { pipelineStack } from './pipeline-stack';

const FOUNDATION = 'amazon.nova-pro-v1:0';
const PROFILE = 'us.anthropic.claude-3-5-haiku-20241022-v1:0';

describe('FineTuningPipeline judgeModelIds', () => {
  // GIVEN a pipeline that allows a foundation model and a cross-region inference profile as judges
  const { stack, pipeline } = pipelineStack({ judgeModelIds: [FOUNDATION, PROFILE] });
  const template = Template.fromStack(stack);

  test('passes the four compliance packs with no unacknowledged finding', () => {
    expect(complianceFindings(stack)).toEqual([]);
  });

  test('the judge may invoke the named models only: the foundation model, the profile and its model in the geography', () => {
    const policies = template.findResources('AWS::IAM::Policy', { Properties: { Roles: [{ Ref: Match.stringLikeRegexp('JudgeFunctionRole') }] } });
    const statements = Object.values(policies).flatMap((p: any) => p.Properties.PolicyDocument.Statement);
    const bedrock = statements.filter((s: any) => JSON.stringify(s.Action).includes('bedrock'));
    expect(bedrock).toHaveLength(1);
    expect(bedrock[0].Action).toBe('bedrock:InvokeModel');
    const resources = JSON.stringify(bedrock[0].Resource);
    expect(resources).toContain(`:bedrock:us-east-1::foundation-model/${FOUNDATION}`);
    expect(resources).toContain(`:bedrock:us-east-1:123456789012:inference-profile/${PROFILE}`);
    expect(resources).toContain(':bedrock:*::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0');
    expect(bedrock[0].Resource).toHaveLength(3);
    // S3: writes under eval-reports/*/judge/ and each evaluation's report.html (the judge's section), nothing else
    const puts = statements.filter((s: any) => s.Action === 's3:PutObject');
    expect(puts).toHaveLength(1);
    const written = puts[0].Resource.map((r: any) => JSON.stringify(r).replace(/.*\/eval-reports/, 'eval-reports').replace(/"\]\]}$/, ''));
    expect(written).toEqual(['eval-reports/*/judge/*', 'eval-reports/*/output/model/report.html']);
  });

  test('PlanRun is told the allowed judge models; the judge function times out within 15 minutes', () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ TUNEYARD_JUDGE_MODEL_IDS: `${FOUNDATION},${PROFILE}` }) },
    });
    template.hasResourceProperties('AWS::Lambda::Function', { Description: Match.stringLikeRegexp('LLM judge'), Timeout: 600 });
    expect(pipeline.judgeFunction).toBeDefined();
  });

  test('JudgeAnswers loops through JudgeDone, and its failures are caught into JudgeFailed', () => {
    const states = definitionFromTemplate(template.toJSON()).States;
    expect(states.JudgeAnswers.Next).toBe('JudgeDone');
    expect(states.JudgeDone.Default).toBe('JudgeAnswers');
    expect(states.JudgeAnswers.Catch.map((c: any) => c.Next)).toEqual(['NotifyJudgeFailed']);
    expect(states.JudgeAnswers.TimeoutSeconds).toBe(660);
    expect(states.Evaluate.Next).toBe('JudgeRequested');
    expect(states.JudgeResult).toMatchObject({ InputPath: '$.judgeProgress.result', ResultPath: '$.judge', Next: 'ReadEvalReport' });
  });

  test('without judgeModelIds there is no judge function and PlanRun allows none', () => {
    const plain = pipelineStack();
    expect(plain.pipeline.judgeFunction).toBeUndefined();
    Template.fromStack(plain.stack).hasResourceProperties('AWS::Lambda::Function', { Environment: { Variables: Match.objectLike({ TUNEYARD_JUDGE_MODEL_IDS: '' }) } });
  });

  test('fails when a judge model id is an ARN', () => {
    const s = testStack();
    const store = new DatasetStore(s, 'Store');
    expect(() => new FineTuningPipeline(s, 'Pipeline', { store, judgeModelIds: [`arn:aws:bedrock:us-east-1::foundation-model/${FOUNDATION}`] })).toThrow(
      /judgeModelIds: "arn:aws:bedrock:us-east-1::foundation-model\/amazon\.nova-pro-v1:0" is not a Bedrock model id or inference profile id/,
    );
  });
});

describe('FineTuningPlaneStack pipeline.judgeModelIds', () => {
  test('the plane configuration allows judge models: the pipeline gets the judge, and the plane stays compliant', () => {
    const stack = new FineTuningPlaneStack(testApp(), 'Tuneyard', { env: TEST_ENV, config: { pipeline: { judgeModelIds: [FOUNDATION] } } });
    const states = definitionFromTemplate(Template.fromStack(stack).toJSON()).States;
    expect(states.JudgeAnswers).toBeDefined();
    expect(complianceFindings(stack)).toEqual([]);
    // the judge in the plane's isolated subnets reaches Bedrock Runtime through an interface endpoint; a plane without a judge has none
    const bedrock = { ServiceName: Match.stringLikeRegexp('bedrock-runtime'), VpcEndpointType: 'Interface', PrivateDnsEnabled: true };
    Template.fromStack(stack).resourcePropertiesCountIs('AWS::EC2::VPCEndpoint', bedrock, 1);
    Template.fromStack(new FineTuningPlaneStack(testApp(), 'Tuneyard', { env: TEST_ENV })).resourcePropertiesCountIs('AWS::EC2::VPCEndpoint', bedrock, 0);
  });

  test('fails when the configuration names a judge model by ARN', () => {
    expect(() => parsePlaneConfig({ pipeline: { judgeModelIds: ['arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0'] } }, 'cdk.json')).toThrow(/pipeline\.judgeModelIds\.0.*must be a Bedrock model id/);
  });
});
