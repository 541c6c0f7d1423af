import { Template } from 'aws-cdk-lib/assertions';
import { FineTuningPlaneStack } from '../lib/fine-tuning-plane-stack';
import { complianceFindings, TEST_ENV, testApp } from './support/app';

function plane(config = {}) {
  return new FineTuningPlaneStack(testApp(), 'Tuneyard', { env: TEST_ENV, config });
}

describe('FineTuningPlaneStack', () => {
  test('passes AwsSolutions, HIPAA Security, NIST 800-53 rev 5 and PCI DSS 3.2.1 with no unacknowledged finding', () => {
    expect(complianceFindings(plane())).toEqual([]);
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
    // the only key left is the VPC flow logs' own
    template.resourceCountIs('AWS::KMS::Key', 1);
    template.hasResourceProperties('AWS::KMS::Key', { Description: 'Tuneyard VPC flow logs' });
  });

  test('fails synth when the configuration is wrong, naming the field, the value and the fix', () => {
    expect(() => plane({ dataStore: { checkpointExpirationDays: -1 } })).toThrow(
      /Tuneyard config: invalid Tuneyard configuration:\n {2}- dataStore\.checkpointExpirationDays: must be at least 1 day \(got -1\)/,
    );
  });
});
