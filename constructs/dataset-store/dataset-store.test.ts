import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { complianceFindings, testStack } from '../../test/support/app';
import { DatasetStore } from './dataset-store';

function dataBucket(template: Template): Record<string, unknown> {
  const buckets = template.findResources('AWS::S3::Bucket', {
    Properties: { BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms' } }] } },
  });
  const ids = Object.keys(buckets);
  expect(ids).toHaveLength(1);
  return buckets[ids[0]].Properties;
}

function lifecycleRule(template: Template, id: string): Record<string, unknown> | undefined {
  const rules = (dataBucket(template).LifecycleConfiguration as { Rules: Record<string, unknown>[] }).Rules;
  return rules.find((r) => r.Id === id);
}

describe('DatasetStore defaults', () => {
  // GIVEN
  const stack = testStack();
  // WHEN
  new DatasetStore(stack, 'Data');
  const template = Template.fromStack(stack);

  test('creates a customer-managed KMS key with rotation, retained on deletion', () => {
    template.hasResource('AWS::KMS::Key', {
      Properties: { EnableKeyRotation: true },
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
    });
  });

  test('encrypts the data bucket with that key by default, with a bucket key', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [
          {
            BucketKeyEnabled: true,
            ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: { 'Fn::GetAtt': [Match.stringLikeRegexp('DataKey'), 'Arn'] } },
          },
        ],
      },
    });
  });

  test('blocks public access, disables ACLs and versions both buckets', () => {
    const buckets = template.findResources('AWS::S3::Bucket');
    expect(Object.keys(buckets)).toHaveLength(2);
    for (const bucket of Object.values(buckets)) {
      expect(bucket.Properties.PublicAccessBlockConfiguration).toEqual({
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      });
      expect(bucket.Properties.OwnershipControls).toEqual({ Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] });
      expect(bucket.Properties.VersioningConfiguration).toEqual({ Status: 'Enabled' });
      expect(bucket.DeletionPolicy).toBe('Retain');
    }
  });

  test('denies non-TLS requests on both buckets', () => {
    const policies = template.findResources('AWS::S3::BucketPolicy');
    expect(Object.keys(policies)).toHaveLength(2);
    for (const policy of Object.values(policies)) {
      expect(policy.Properties.PolicyDocument.Statement).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ Effect: 'Deny', Action: 's3:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        ]),
      );
    }
  });

  test('sends server access logs to a separate SSE-S3 bucket whose logs expire after 365 days', () => {
    const logging = dataBucket(template).LoggingConfiguration as { DestinationBucketName: { Ref: string }; LogFilePrefix: string };
    expect(logging.LogFilePrefix).toBe('data-bucket/');
    const logBucket = template.toJSON().Resources[logging.DestinationBucketName.Ref];
    expect(logBucket.Properties.BucketEncryption.ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault.SSEAlgorithm).toBe('AES256');
    expect(logBucket.Properties.LifecycleConfiguration.Rules).toContainEqual(
      expect.objectContaining({ Id: 'expire-access-logs', ExpirationInDays: 365, Status: 'Enabled' }),
    );
  });

  test('expires checkpoints after 14 days and noncurrent artifact/eval versions after 30; never expires datasets', () => {
    expect(lifecycleRule(template, 'expire-checkpoints')).toMatchObject({ Prefix: 'checkpoints/', ExpirationInDays: 14, Status: 'Enabled' });
    for (const prefix of ['artifacts', 'eval-reports']) {
      expect(lifecycleRule(template, `expire-noncurrent-${prefix}`)).toMatchObject({
        Prefix: `${prefix}/`,
        NoncurrentVersionExpiration: { NoncurrentDays: 30 },
      });
    }
    expect(lifecycleRule(template, 'abort-incomplete-multipart-uploads')).toMatchObject({ AbortIncompleteMultipartUpload: { DaysAfterInitiation: 7 } });
    const rules = (dataBucket(template).LifecycleConfiguration as { Rules: Record<string, unknown>[] }).Rules;
    const expiring = rules.filter((r) => r.ExpirationInDays !== undefined || r.NoncurrentVersionExpiration !== undefined);
    for (const rule of expiring) {
      // a rule without a prefix would reach datasets/
      expect(rule.Prefix).toMatch(/^(checkpoints|artifacts|eval-reports|base-models)\/$/);
    }
  });

  test('makes dataset versions write-once: no put without If-None-Match, no delete, for everyone', () => {
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          {
            Sid: 'DatasetVersionsAreWriteOnce',
            Effect: 'Deny',
            Principal: { AWS: '*' },
            Action: 's3:PutObject',
            Resource: { 'Fn::Join': ['', [{ 'Fn::GetAtt': [Match.stringLikeRegexp('DataBucket|Data'), 'Arn'] }, '/datasets/*']] },
            Condition: { Null: { 's3:if-none-match': 'true' }, Bool: { 's3:ObjectCreationOperation': 'true' } },
          },
          {
            Sid: 'DatasetVersionsAreNeverDeleted',
            Effect: 'Deny',
            Principal: { AWS: '*' },
            Action: ['s3:DeleteObject', 's3:DeleteObjectVersion'],
            Resource: { 'Fn::Join': ['', [{ 'Fn::GetAtt': [Match.anyValue(), 'Arn'] }, '/datasets/*']] },
          },
        ]),
      },
    });
  });

  test('passes the four compliance packs with no unacknowledged finding', () => {
    expect(complianceFindings(stack)).toEqual([]);
  });
});

describe('DatasetStore props', () => {
  test('uses a given key instead of creating one', () => {
    // GIVEN
    const stack = testStack();
    const key = new kms.Key(stack, 'MyKey', { enableKeyRotation: true });
    // WHEN
    const store = new DatasetStore(stack, 'Data', { encryptionKey: key });
    // THEN
    expect(store.encryptionKey).toBe(key);
    Template.fromStack(stack).resourceCountIs('AWS::KMS::Key', 1);
    Template.fromStack(stack).hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { KMSMasterKeyID: { 'Fn::GetAtt': [Match.stringLikeRegexp('MyKey'), 'Arn'] } } }] },
    });
  });

  test('sets lifecycle days from props', () => {
    const stack = testStack();
    new DatasetStore(stack, 'Data', {
      checkpointExpiration: Duration.days(3),
      noncurrentVersionExpiration: Duration.days(90),
      accessLogsRetention: Duration.days(400),
    });
    const template = Template.fromStack(stack);
    expect(lifecycleRule(template, 'expire-checkpoints')).toMatchObject({ ExpirationInDays: 3 });
    expect(lifecycleRule(template, 'expire-noncurrent-artifacts')).toMatchObject({ NoncurrentVersionExpiration: { NoncurrentDays: 90 } });
    template.hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: { Rules: Match.arrayWith([Match.objectLike({ Id: 'expire-access-logs', ExpirationInDays: 400 })]) },
    });
  });

  test('exempts only the dataset admin role from the write-once statements', () => {
    const stack = testStack();
    const admin = iam.Role.fromRoleArn(stack, 'Admin', 'arn:aws:iam::123456789012:role/DataAdmin');
    new DatasetStore(stack, 'Data', { datasetAdminRole: admin });
    const statements = Object.values(Template.fromStack(stack).findResources('AWS::S3::BucketPolicy')).flatMap(
      (p) => p.Properties.PolicyDocument.Statement as { Sid?: string; Condition?: Record<string, unknown> }[],
    );
    for (const sid of ['DatasetVersionsAreWriteOnce', 'DatasetVersionsAreNeverDeleted']) {
      const statement = statements.find((s) => s.Sid === sid);
      expect(statement?.Condition).toMatchObject({ ArnNotEquals: { 'aws:PrincipalArn': 'arn:aws:iam::123456789012:role/DataAdmin' } });
    }
  });

  test('destroys the buckets and key when asked', () => {
    const stack = testStack();
    new DatasetStore(stack, 'Data', { removalPolicy: RemovalPolicy.DESTROY });
    const template = Template.fromStack(stack);
    template.allResources('AWS::S3::Bucket', { DeletionPolicy: 'Delete' });
    template.allResources('AWS::KMS::Key', { DeletionPolicy: 'Delete' });
  });

  test('uses a given access-log bucket and creates none', () => {
    const stack = testStack();
    const logs = s3.Bucket.fromBucketName(stack, 'Logs', 'central-access-logs');
    new DatasetStore(stack, 'Data', { accessLogsBucket: logs });
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::S3::Bucket', 1);
    template.hasResourceProperties('AWS::S3::Bucket', { LoggingConfiguration: { DestinationBucketName: 'central-access-logs' } });
  });

  test('imports an existing bucket and key: creates nothing and warns that settings are unmanaged', () => {
    // GIVEN
    const stack = testStack();
    const key = kms.Key.fromKeyArn(stack, 'Key', 'arn:aws:kms:us-east-1:123456789012:key/abc');
    const bucket = s3.Bucket.fromBucketAttributes(stack, 'Bucket', { bucketName: 'existing-data', encryptionKey: key });
    // WHEN
    const store = new DatasetStore(stack, 'Data', { bucket });
    const role = new iam.Role(stack, 'Reader', { assumedBy: new iam.ServicePrincipal('sagemaker.amazonaws.com') });
    store.grantReadDatasets(role);
    // THEN
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::S3::Bucket', 0);
    template.resourceCountIs('AWS::KMS::Key', 0);
    expect(store.encryptionKey).toBe(key);
    Annotations.fromStack(stack).hasWarning('/Test/Data', Match.stringLikeRegexp('existing-data|imported.*not managed'));
    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Action: 'kms:Decrypt', Resource: 'arn:aws:kms:us-east-1:123456789012:key/abc' })]) },
    });
  });

  test('fails when a lifecycle duration is not a whole number of days', () => {
    const stack = testStack();
    expect(() => new DatasetStore(stack, 'Data', { checkpointExpiration: Duration.hours(12) })).toThrow(
      /checkpointExpiration must be a whole number of days, at least 1.*got 12 hours.*Duration\.days/,
    );
  });

  test('fails when log settings are given with an imported bucket', () => {
    const stack = testStack();
    const bucket = s3.Bucket.fromBucketName(stack, 'Bucket', 'existing-data');
    const admin = iam.Role.fromRoleArn(stack, 'Admin', 'arn:aws:iam::123456789012:role/DataAdmin');
    expect(() => new DatasetStore(stack, 'Data', { bucket, datasetAdminRole: admin })).toThrow(/imported `bucket` they would be ignored/);
  });
});

describe('DatasetStore grants', () => {
  function grantStatements(grant: (store: DatasetStore, role: iam.IGrantable) => void) {
    const stack = testStack();
    const store = new DatasetStore(stack, 'Data');
    const role = new iam.Role(stack, 'Job', { assumedBy: new iam.ServicePrincipal('sagemaker.amazonaws.com') });
    grant(store, role);
    const policies = Template.fromStack(stack).findResources('AWS::IAM::Policy');
    return Object.values(policies).flatMap((p) => p.Properties.PolicyDocument.Statement as Record<string, unknown>[]);
  }

  const objectResource = (prefix: string) => ({ 'Fn::Join': ['', [{ 'Fn::GetAtt': [expect.stringMatching(/^Data/), 'Arn'] }, `/${prefix}*`]] });

  test.each([
    ['grantReadDatasets', (s: DatasetStore, r: iam.IGrantable) => s.grantReadDatasets(r), 'datasets/', ['s3:GetObject']],
    ['grantReadDatasets(name)', (s: DatasetStore, r: iam.IGrantable) => s.grantReadDatasets(r, 'chats'), 'datasets/chats/', ['s3:GetObject']],
    ['grantWriteDatasets', (s: DatasetStore, r: iam.IGrantable) => s.grantWriteDatasets(r), 'datasets/', ['s3:PutObject']],
    ['grantReadArtifacts', (s: DatasetStore, r: iam.IGrantable) => s.grantReadArtifacts(r), 'artifacts/', ['s3:GetObject']],
    ['grantWriteArtifacts', (s: DatasetStore, r: iam.IGrantable) => s.grantWriteArtifacts(r), 'artifacts/', ['s3:PutObject']],
    ['grantReadWriteCheckpoints', (s: DatasetStore, r: iam.IGrantable) => s.grantReadWriteCheckpoints(r), 'checkpoints/', ['s3:GetObject', 's3:PutObject', 's3:DeleteObject']],
    ['grantReadBaseModels', (s: DatasetStore, r: iam.IGrantable) => s.grantReadBaseModels(r), 'base-models/', ['s3:GetObject']],
    ['grantWriteBaseModels', (s: DatasetStore, r: iam.IGrantable) => s.grantWriteBaseModels(r), 'base-models/', ['s3:PutObject']],
    ['grantReadEvalReports', (s: DatasetStore, r: iam.IGrantable) => s.grantReadEvalReports(r), 'eval-reports/', ['s3:GetObject']],
    ['grantWriteEvalReports', (s: DatasetStore, r: iam.IGrantable) => s.grantWriteEvalReports(r), 'eval-reports/', ['s3:PutObject']],
  ])('%s is scoped to its prefix', (_name, grant, prefix, actions) => {
    const statements = grantStatements(grant);
    const objectStatement = statements.find((s) => JSON.stringify(s.Resource).includes(`/${prefix}*`));
    expect(objectStatement).toBeDefined();
    expect(objectStatement!.Resource).toEqual(objectResource(prefix));
    expect(objectStatement!.Action).toEqual(expect.arrayContaining(actions));
    // listing is limited to the prefix
    expect(statements).toContainEqual(
      expect.objectContaining({ Action: 's3:ListBucket', Condition: { StringLike: { 's3:prefix': `${prefix}*` } } }),
    );
    // no statement reaches another prefix or the whole bucket's objects
    for (const s of statements) {
      expect(JSON.stringify(s.Resource)).not.toContain('"/*"');
    }
    // write grants never include a delete of datasets
    if (prefix.startsWith('datasets')) {
      expect(JSON.stringify(statements)).not.toContain('s3:DeleteObject');
    }
  });

  test('read grants decrypt with the data key; write grants can generate data keys', () => {
    const read = grantStatements((s, r) => s.grantReadArtifacts(r));
    expect(read).toContainEqual(expect.objectContaining({ Action: 'kms:Decrypt' }));
    expect(JSON.stringify(read)).not.toContain('kms:GenerateDataKey');
    const write = grantStatements((s, r) => s.grantWriteArtifacts(r));
    expect(write).toContainEqual(expect.objectContaining({ Action: ['kms:Decrypt', 'kms:GenerateDataKey'] }));
  });
});

describe('DatasetStore metrics', () => {
  test('bucket size and object count are the daily S3 storage metrics of the data bucket', () => {
    // GIVEN
    const stack = testStack();
    const store = new DatasetStore(stack, 'Data');
    // WHEN
    const size = store.metricBucketSizeBytes();
    const count = store.metricNumberOfObjects({ statistic: 'Maximum' });
    // THEN
    const bucketRef = { Ref: stack.resolve((store.bucket.node.defaultChild as s3.CfnBucket).logicalId) };
    expect([size.namespace, size.metricName, size.statistic, size.period.toSeconds()]).toEqual(['AWS/S3', 'BucketSizeBytes', 'Average', 86400]);
    expect(stack.resolve(size.dimensions)).toEqual({ BucketName: bucketRef, StorageType: 'StandardStorage' });
    expect([count.namespace, count.metricName, count.statistic, count.period.toSeconds()]).toEqual(['AWS/S3', 'NumberOfObjects', 'Maximum', 86400]);
    expect(stack.resolve(count.dimensions)).toEqual({ BucketName: bucketRef, StorageType: 'AllStorageTypes' });
  });

  test('an imported bucket is measured by its name', () => {
    const stack = testStack();
    const store = new DatasetStore(stack, 'Data', { bucket: s3.Bucket.fromBucketName(stack, 'Bucket', 'team-data') });
    expect(store.metricNumberOfObjects().dimensions).toEqual({ BucketName: 'team-data', StorageType: 'AllStorageTypes' });
  });
});
