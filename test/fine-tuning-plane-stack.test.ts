import { Match, Template } from 'aws-cdk-lib/assertions';
import { FineTuningPlaneStack } from '../lib/fine-tuning-plane-stack';
import { complianceFindings, TEST_ENV, testApp } from './support/app';
import { definitionFromTemplate } from './support/local-sfn';

function plane(config = {}) {
  return new FineTuningPlaneStack(testApp(), 'Tuneyard', { env: TEST_ENV, config });
}

describe('FineTuningPlaneStack', () => {
  test('passes AwsSolutions, HIPAA Security, NIST 800-53 rev 5 and PCI DSS 3.2.1 with no unacknowledged finding', () => {
    expect(complianceFindings(plane())).toEqual([]);
  });

  test('reserves 21 concurrent executions for its functions, or none with reserveLambdaConcurrency: false (still compliant)', () => {
    const reserved = (stack: FineTuningPlaneStack) =>
      Object.values(Template.fromStack(stack).findResources('AWS::Lambda::Function'))
        .map((f: any) => f.Properties.ReservedConcurrentExecutions)
        .filter((r) => r !== undefined);
    expect(reserved(plane()).sort()).toEqual([1, 5, 5, 5, 5]);
    const unreserved = plane({ reserveLambdaConcurrency: false });
    expect(reserved(unreserved)).toEqual([]);
    expect(complianceFindings(unreserved)).toEqual([]);
  });

  test('matches the reviewed snapshot (asset hashes normalised)', () => {
    expect(Template.fromStack(plane()).toJSON()).toMatchSnapshot();
  });

  test('applies the configuration to the data store', () => {
    const template = Template.fromStack(plane({ removalPolicy: 'destroy', dataStore: { checkpointExpirationDays: 5 } }));
    template.allResources('AWS::S3::Bucket', { DeletionPolicy: 'Delete' });
    const rules = Object.values(template.findResources('AWS::S3::Bucket')).flatMap(
      (b) => (b.Properties.LifecycleConfiguration?.Rules ?? []) as Record<string, unknown>[],
    );
    expect(rules).toContainEqual(expect.objectContaining({ Id: 'expire-checkpoints', ExpirationInDays: 5 }));
  });

  test('uses an existing bucket and key from the configuration', () => {
    const template = Template.fromStack(
      plane({ dataStore: { existingBucketName: 'team-data', existingKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/k' } }),
    );
    template.resourceCountIs('AWS::S3::Bucket', 0);
    // no data key is created; the keys left are the operational ones (logs, notifications)
    const descriptions = Object.values(template.findResources('AWS::KMS::Key')).map((k) => k.Properties.Description as string);
    expect(descriptions.some((d) => /datasets/.test(d))).toBe(false);
    // the jobs encrypt their volumes and outputs with the given key
    expect(JSON.stringify(template.toJSON())).toContain('arn:aws:kms:us-east-1:123456789012:key/k');
  });

  test('exposes the outputs the tuneyard CLI reads to find the plane', () => {
    const outputs = Template.fromStack(plane()).toJSON().Outputs;
    for (const name of ['StateMachineArn', 'DataBucketName', 'NotificationTopicArn', 'ModelPackageGroupName', 'TrainingJobPrefix']) {
      expect(outputs[name]).toBeDefined();
    }
    expect(outputs.TrainingJobPrefix.Value).toBe('tuneyard-');
    expect(outputs.EndpointName).toBeUndefined();
  });

  test('adds a vLLM endpoint and the Deploy stage when serving is configured', () => {
    // GIVEN
    const stack = plane({
      serving: { instanceType: 'ml.g5.12xlarge', baseModel: 'meta-llama/Llama-3.1-8B-Instruct', modelPrefix: 'base-models/llama-3.1-8b/', adapters: { minCopies: 0, maxCopies: 2 } },
    });
    // WHEN
    const template = Template.fromStack(stack);
    // THEN
    template.resourceCountIs('AWS::SageMaker::Endpoint', 1);
    template.resourceCountIs('AWS::SageMaker::InferenceComponent', 1);
    expect(template.toJSON().Outputs.EndpointName).toBeDefined();
    // the Deploy stage's function puts the run's adapter on the endpoint's base component
    expect(definitionFromTemplate(template.toJSON()).States.DeployStart).toMatchObject({ Type: 'Task', Parameters: { action: 'start' } });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ TUNEYARD_BASE_COMPONENT_NAME: Match.anyValue() }) },
    });
    // PlanRun refuses runs that write no adapter, or whose jobs could outlast the pipeline's 7-day timeout
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ TUNEYARD_DEPLOY_STAGE: 'enabled', TUNEYARD_DEPLOYS: 'adapter', TUNEYARD_RUN_TIMEOUT_SECONDS: String(7 * 24 * 3600) }) },
    });
    // the endpoint reads its weights from S3 through the gateway endpoint: HTTPS to the looked-up prefix list
    const endpointGroup = Object.entries(template.findResources('AWS::EC2::SecurityGroup')).find(([, g]) => /vLLM endpoint/.test(g.Properties.GroupDescription))![0];
    const egress = Object.values(template.findResources('AWS::EC2::SecurityGroupEgress')).filter((e) => e.Properties.GroupId['Fn::GetAtt']?.[0] === endpointGroup);
    expect(egress).toContainEqual(expect.objectContaining({ Properties: expect.objectContaining({ DestinationPrefixListId: expect.anything(), FromPort: 443 }) }));
    expect(complianceFindings(stack)).toEqual([]);
  });

  test('adds a single-model vLLM endpoint whose Deploy stage rolls the endpoint to the merged model', () => {
    const stack = plane({ serving: { instanceType: 'ml.g6e.2xlarge', baseModel: 'meta-llama/Llama-3.1-8B-Instruct', modelPrefix: 'base-models/llama-3.1-8b/' } });
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::SageMaker::Endpoint', 1);
    template.resourceCountIs('AWS::SageMaker::InferenceComponent', 0);
    expect(definitionFromTemplate(template.toJSON()).States.DeployStart).toMatchObject({ Type: 'Task', Parameters: { action: 'start' } });
    template.hasResourceProperties('AWS::Lambda::Function', { Environment: { Variables: Match.objectLike({ TUNEYARD_DEPLOYMENT_CONFIG: Match.anyValue() }) } });
    template.hasResourceProperties('AWS::Lambda::Function', { Environment: { Variables: Match.objectLike({ TUNEYARD_DEPLOYS: 'full-weights' }) } });
    expect(complianceFindings(stack)).toEqual([]);
  });

  test('fails synth when the served model cannot fit the serving instance', () => {
    expect(() =>
      plane({ serving: { instanceType: 'ml.g5.2xlarge', baseModel: 'meta-llama/Llama-3.1-70B-Instruct', modelPrefix: 'base-models/llama-3.1-70b/' } }),
    ).toThrow(/Serving a 70B model .* needs ~\d+(\.\d)? GiB per GPU; ml\.g5\.2xlarge gives vLLM 21\.6 GiB per GPU.*The smallest instance that fits is ml\./);
  });

  test('fails synth when the configuration is wrong, naming the field, the value and the fix', () => {
    expect(() => plane({ dataStore: { checkpointExpirationDays: -1 } })).toThrow(
      /Tuneyard config: invalid Tuneyard configuration:\n {2}- dataStore\.checkpointExpirationDays: must be at least 1 day \(got -1\)/,
    );
  });
});
