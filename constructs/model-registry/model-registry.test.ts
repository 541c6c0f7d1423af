import { Stack, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { LINEAGE_KEYS, ModelRegistry, REGISTER_STATE_TIMEOUT_SECONDS } from './model-registry';
import { complianceFindings, testApp, testStack } from '../../test/support/app';
import { DEFAULT_VLLM_DLC_TAG, VllmImage } from '../vllm-endpoint/image';

const IMAGE = '763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.33.0-lmi15.0.0-cu128';

/** The Register state as Step Functions receives it (tokens resolved against the stack). */
function renderedState(stack: Stack, state: sfn.State): Record<string, any> {
  return stack.resolve((state as sfn.CustomState).toStateJson()) as Record<string, any>;
}

// The value pattern of CreateModelPackage's CustomerMetadataProperties (botocore CustomerMetadataValue).
const METADATA_VALUE = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]{1,256}$/u;

describe('ModelRegistry', () => {
  test('creates a model package group with a lower-case name derived from its path', () => {
    // GIVEN
    const stack = testStack();
    // WHEN
    const registry = new ModelRegistry(stack, 'Registry');
    // THEN
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::SageMaker::ModelPackageGroup', 1);
    template.hasResourceProperties('AWS::SageMaker::ModelPackageGroup', {
      ModelPackageGroupName: registry.modelPackageGroupName,
      ModelPackageGroupDescription: 'Models fine-tuned by Tuneyard, with their lineage and eval reports',
      Tags: Match.arrayWith([{ Key: 'tuneyard:component', Value: 'model-registry' }]),
    });
    expect(registry.modelPackageGroupName).toMatch(/^[a-z0-9](-*[a-z0-9]){0,62}$/);
    expect(stack.resolve(registry.modelPackageGroupArn)).toEqual({ 'Fn::GetAtt': [stack.getLogicalId(registry.modelPackageGroup), 'ModelPackageGroupArn'] });
  });

  test('uses the given name and description', () => {
    const stack = testStack();
    new ModelRegistry(stack, 'Registry', { modelPackageGroupName: 'team-a-models', description: 'Team A' });
    Template.fromStack(stack).hasResourceProperties('AWS::SageMaker::ModelPackageGroup', {
      ModelPackageGroupName: 'team-a-models',
      ModelPackageGroupDescription: 'Team A',
    });
  });

  test('fails when the group name is not 1-63 lower-case letters, digits and hyphens', () => {
    const stack = testStack();
    expect(() => new ModelRegistry(stack, 'Upper', { modelPackageGroupName: 'Team_Models' })).toThrow(
      /modelPackageGroupName "Team_Models" is invalid: use 1-63 lower-case letters, digits and hyphens/,
    );
    expect(() => new ModelRegistry(stack, 'Trailing', { modelPackageGroupName: 'models-' })).toThrow(/modelPackageGroupName "models-" is invalid/);
    expect(() => new ModelRegistry(stack, 'Long', { modelPackageGroupName: 'a'.repeat(64) })).toThrow(/is invalid/);
    expect(() => new ModelRegistry(stack, 'Max', { modelPackageGroupName: 'a'.repeat(63) })).not.toThrow();
  });

  describe('registerState', () => {
    test('renders createModelPackage with the plan, the lineage and the eval report', () => {
      // GIVEN
      const stack = testStack();
      const registry = new ModelRegistry(stack, 'Registry', { modelPackageGroupName: 'tuneyard-models', inferenceImageUri: IMAGE });
      // WHEN
      const state = renderedState(stack, registry.registerState('Register'));
      // THEN
      expect(state.Type).toBe('Task');
      expect(state.Resource).toBe('arn:aws:states:::aws-sdk:sagemaker:createModelPackage');
      expect(state.TimeoutSeconds).toBe(REGISTER_STATE_TIMEOUT_SECONDS);
      expect(state.ResultPath).toBe('$.registration');
      expect(state.ResultSelector).toEqual({ 'ModelPackageArn.$': '$.ModelPackageArn' });
      const p = state.Parameters;
      expect(p.ModelPackageGroupName).toBe('tuneyard-models');
      expect(p['ModelApprovalStatus.$']).toBe('$.plan.modelApprovalStatus');
      expect(p.ModelApprovalStatus).toBeUndefined();
      expect(p['ModelPackageDescription.$']).toBe("States.Format('Tuneyard run {}; recipe {}', $.plan.runId, $.plan.lineage.recipe)");
      // the uncompressed training output, as a prefix
      expect(p.InferenceSpecification.Containers).toEqual([
        {
          Image: IMAGE,
          ModelDataSource: { S3DataSource: { 'S3Uri.$': '$.plan.modelArtifactS3Uri', S3DataType: 'S3Prefix', CompressionType: 'None' } },
        },
      ]);
      expect(p.InferenceSpecification.Containers[0].ModelDataUrl).toBeUndefined();
      // every lineage key, each from the plan, the training result or the report; nothing else
      const metadata = p.CustomerMetadataProperties as Record<string, string>;
      expect(Object.keys(metadata).map((k) => k.replace(/\.\$$/, '')).sort()).toEqual([...LINEAGE_KEYS].sort());
      expect(Object.keys(metadata).every((k) => k.endsWith('.$'))).toBe(true);
      expect(metadata).toEqual({
        'runId.$': '$.plan.lineage.runId',
        'baseModel.$': '$.plan.lineage.baseModel',
        'datasetName.$': '$.plan.lineage.datasetName',
        'datasetSha256.$': '$.plan.lineage.datasetSha256',
        'method.$': '$.plan.lineage.method',
        'kind.$': '$.plan.lineage.kind',
        'rewardModel.$': '$.plan.lineage.rewardModel',
        'trainingJobName.$': '$.training.TrainingJobName',
        'evalLossRatio.$': "States.Format('{}', $.report.evalLossRatio)",
        'forgettingIncrease.$': "States.Format('{}', $.report.forgettingIncrease)",
        'evalReport.$': '$.plan.evalReport.s3Uri',
      });
      expect(p.ModelMetrics).toEqual({
        ModelQuality: { Statistics: { ContentType: 'application/json', 'S3Uri.$': '$.plan.evalReport.s3Uri' } },
      });
    });

    test('stays within the CreateModelPackage metadata limits', () => {
      // 50 properties at most, keys of 1-128 characters from the allowed alphabet
      expect(LINEAGE_KEYS.length).toBeLessThanOrEqual(50);
      for (const key of LINEAGE_KEYS) expect(key).toMatch(/^[\p{L}\p{Z}\p{N}_.:/=+\-@]{1,128}$/u);
      // the recipe is JSON: it could never be a metadata value, which is why it is in the description
      expect('{"method":"qlora","loraR":16}').not.toMatch(METADATA_VALUE);
      expect(LINEAGE_KEYS).not.toContain('recipe');
      // what the other values look like at run time passes
      for (const value of [
        'tuneyard-support-1a2b3c4d5e6f-train', 's3://data/eval-reports/run-1/eval.json', 'meta-llama/Llama-3.1-8B-Instruct', '0.93', 'null', '1.5E-4',
        // a reward model (the model package ARN or s3:// folder an RL run named), or none
        'arn:aws:sagemaker:us-east-1:123456789012:model-package/tuneyard-models/3', 's3://data/artifacts/rm-run/tuneyard-rm-run-train/output/model/', 'none',
      ]) {
        expect(value).toMatch(METADATA_VALUE);
      }
    });

    test('takes the image and result path from the options', () => {
      const stack = testStack();
      const registry = new ModelRegistry(stack, 'Registry', { inferenceImageUri: 'props-image' });
      const state = renderedState(stack, registry.registerState('Register', { inferenceImageUri: 'option-image', resultPath: '$.model' }));
      expect(state.Parameters.InferenceSpecification.Containers[0].Image).toBe('option-image');
      expect(state.ResultPath).toBe('$.model');
    });

    test("names the vLLM DLC that endpoints serve with by default, from the stack's region", () => {
      // GIVEN a registry given no image, in two regions
      const east = testStack();
      const hongKong = new Stack(testApp(), 'HongKong', { env: { account: '123456789012', region: 'ap-east-2' } });
      // WHEN
      const image = (stack: Stack) => renderedState(stack, new ModelRegistry(stack, 'Registry').registerState('Register')).Parameters.InferenceSpecification.Containers[0].Image;
      // THEN the image VllmImage.dlc() binds to, so the registered package names what serves it
      const eastImage = image(east);
      expect(eastImage).toBe(`763104351884.dkr.ecr.us-east-1.amazonaws.com/vllm:${DEFAULT_VLLM_DLC_TAG}`);
      expect(eastImage).toBe(VllmImage.dlc().bind(east).imageUri);
      expect(image(hongKong)).toBe(`975050140332.dkr.ecr.ap-east-2.amazonaws.com/vllm:${DEFAULT_VLLM_DLC_TAG}`);
    });

    test('fails when the default image is not published in the region, and only when a model is registered', () => {
      const stack = new Stack(testApp(), 'Elsewhere', { env: { account: '123456789012', region: 'xx-north-9' } });
      const registry = new ModelRegistry(stack, 'Registry');
      expect(() => registry.registerState('Register')).toThrow(/the vLLM DLC is not published in region xx-north-9.*VllmImage.fromEcrRepository/);
      expect(renderedState(stack, registry.registerState('Mine', { inferenceImageUri: IMAGE })).Parameters.InferenceSpecification.Containers[0].Image).toBe(IMAGE);
    });
  });

  describe('grantRegister', () => {
    test('allows CreateModelPackage and DescribeModelPackageGroup on this group and its versions only', () => {
      // GIVEN
      const stack = testStack();
      const registry = new ModelRegistry(stack, 'Registry', { modelPackageGroupName: 'tuneyard-models' });
      const role = new iam.Role(stack, 'PipelineRole', { assumedBy: new iam.ServicePrincipal('states.amazonaws.com') });
      // WHEN
      registry.grantRegister(role);
      // THEN
      const [policy] = Object.values(Template.fromStack(stack).findResources('AWS::IAM::Policy'));
      expect(policy.Properties.PolicyDocument.Statement).toEqual([
        {
          Effect: 'Allow',
          Action: ['sagemaker:CreateModelPackage', 'sagemaker:DescribeModelPackageGroup'],
          Resource: [
            'arn:aws:sagemaker:us-east-1:123456789012:model-package/tuneyard-models/*',
            stack.resolve(registry.modelPackageGroupArn),
          ],
        },
      ]);
      expect(JSON.stringify(policy.Properties.PolicyDocument)).not.toMatch(/"\*"|sagemaker:\*/);
    });

    test('a stack with the registry and a granted role has no compliance finding', () => {
      const stack = testStack();
      const registry = new ModelRegistry(stack, 'Registry', { inferenceImageUri: IMAGE });
      const role = new iam.Role(stack, 'PipelineRole', { assumedBy: new iam.ServicePrincipal('states.amazonaws.com') });
      registry.grantRegister(role);
      for (const pack of ['HIPAA.Security', 'NIST.800.53.R5', 'PCI.DSS.321']) {
        // the test's own role, not the registry's: its inline policy is the grant under test
        Validations.of(role.node.findChild('DefaultPolicy')).acknowledge({
          id: `${pack}-IAMNoInlinePolicy`,
          reason: 'The test role: its inline policy holds only the grant under test.',
        });
      }
      expect(complianceFindings(stack)).toEqual([]);
    });
  });
});

describe('ModelRegistry removal', () => {
  test('retains the model package group on stack deletion by default', () => {
    const stack = testStack();
    new ModelRegistry(stack, 'Registry');
    Template.fromStack(stack).hasResource('AWS::SageMaker::ModelPackageGroup', { DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' });
  });
});
