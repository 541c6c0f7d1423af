import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Duration, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { complianceFindings, TEST_ENV, testApp, testStack } from '../../test/support/app';
import { DatasetStore } from '../dataset-store';
import { DatasetValidationFunction, DatasetValidationFunctionProps } from '.';

function build(props: Partial<DatasetValidationFunctionProps> = {}, stack: Stack = testStack()) {
  const store = new DatasetStore(stack, 'Store');
  const validator = new DatasetValidationFunction(stack, 'ValidateDataset', { store, ...props });
  return { stack, store, validator, template: Template.fromStack(stack) };
}

function importedVpc(stack: Stack): ec2.IVpc {
  return ec2.Vpc.fromVpcAttributes(stack, 'Vpc', {
    vpcId: 'vpc-12345678',
    availabilityZones: ['us-east-1a', 'us-east-1b'],
    privateSubnetIds: ['subnet-11111111', 'subnet-22222222'],
    privateSubnetRouteTableIds: ['rtb-11111111', 'rtb-22222222'],
  });
}

describe('DatasetValidationFunction', () => {
  test('an arm64 Node.js 24 function with X-Ray, reserved concurrency and defaults sized for 1 GB', () => {
    // GIVEN / WHEN the defaults
    const { template } = build();
    // THEN
    template.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs24.x',
      Architectures: ['arm64'],
      Handler: 'index.handler',
      MemorySize: 2048,
      Timeout: 900,
      ReservedConcurrentExecutions: 5,
      TracingConfig: { Mode: 'Active' },
      LoggingConfig: Match.objectLike({ LogFormat: 'JSON', LogGroup: { Ref: Match.stringLikeRegexp('^ValidateDatasetLogGroup') } }),
      Environment: { Variables: { DATA_BUCKET: { Ref: Match.stringLikeRegexp('^Store') } } },
    });
    template.resourceCountIs('AWS::Lambda::Function', 1);
  });

  test('logs go to a KMS-encrypted, retained log group kept one year', () => {
    const { template } = build();
    template.hasResource('AWS::Logs::LogGroup', {
      Properties: { RetentionInDays: 365, KmsKeyId: { 'Fn::GetAtt': [Match.stringLikeRegexp('^ValidateDatasetLogKey'), 'Arn'] } },
      DeletionPolicy: 'Retain',
    });
    template.hasResourceProperties('AWS::KMS::Key', {
      EnableKeyRotation: true,
      KeyPolicy: {
        Statement: Match.arrayWith([
          Match.objectLike({ Principal: { Service: 'logs.us-east-1.amazonaws.com' }, Condition: { ArnLike: Match.anyValue() } }),
        ]),
      },
    });
  });

  test('IAM: reads datasets/ only, writes only validation-report.json with If-None-Match, no managed policies', () => {
    const { template } = build();
    const statements = Object.values(template.findResources('AWS::IAM::Policy')).flatMap((p) => p.Properties.PolicyDocument.Statement);
    const s3 = statements.filter((s) => [s.Action].flat().some((a: string) => a.startsWith('s3:')));
    const resources = (s: { Resource: unknown }) => JSON.stringify(s.Resource);
    // THEN every object permission is under datasets/
    for (const s of s3.filter((st) => [st.Action].flat().some((a: string) => a !== 's3:ListBucket'))) {
      expect(resources(s)).toMatch(/"\/datasets\//);
    }
    // AND the only write is the report, conditioned on If-None-Match
    const writes = s3.filter((s) => [s.Action].flat().some((a: string) => /Put|Delete/.test(a)));
    expect(writes).toEqual([
      expect.objectContaining({ Action: 's3:PutObject', Condition: { Null: { 's3:if-none-match': 'false' } } }),
    ]);
    expect(resources(writes[0])).toContain('/datasets/*/validation-report.json');
    // AND listing is limited to datasets/
    expect(s3.find((s) => s.Action === 's3:ListBucket')).toMatchObject({ Condition: { StringLike: { 's3:prefix': 'datasets/*' } } });
    template.hasResourceProperties('AWS::IAM::Role', { ManagedPolicyArns: Match.absent() });
  });

  test('in a VPC: placed in the given subnets with the VPC access policy', () => {
    const stack = testStack();
    const vpc = importedVpc(stack);
    const { template } = build({ vpc }, stack);
    template.hasResourceProperties('AWS::Lambda::Function', {
      VpcConfig: { SubnetIds: ['subnet-11111111', 'subnet-22222222'], SecurityGroupIds: [Match.anyValue()] },
    });
    template.hasResourceProperties('AWS::IAM::Role', {
      ManagedPolicyArns: [{ 'Fn::Join': ['', Match.arrayWith([Match.stringLikeRegexp('AWSLambdaVPCAccessExecutionRole')])] }],
    });
  });

  test('the compliance packs find nothing, with and without a VPC', () => {
    expect(complianceFindings(build().stack)).toEqual([]);
    const stack = testStack();
    expect(complianceFindings(build({ vpc: importedVpc(stack) }, stack).stack)).toEqual([]);
  });

  test('exposes the function as lambda.IFunction and the same bundle in every stack', () => {
    // GIVEN two stacks
    const a = build();
    const b = build({}, testStack('Other'));
    // THEN the function is usable by a LambdaInvoke task and the asset hash is deterministic
    const [fnId] = Object.keys(a.template.findResources('AWS::Lambda::Function'));
    expect(a.stack.resolve(a.validator.function.functionArn)).toEqual({ 'Fn::GetAtt': [fnId, 'Arn'] });
    const key = (t: Template) => Object.values(t.findResources('AWS::Lambda::Function'))[0].Properties.Code.S3Key;
    expect(key(a.template)).toEqual(key(b.template));
  });

  test('the bundle runs in plain Node with only the runtime-provided AWS SDK, and keeps its error names', () => {
    // GIVEN the synthesized asset
    const app = testApp({ 'aws:cdk:enable-asset-metadata': true });
    const { template } = build({}, new Stack(app, 'Bundle', { env: TEST_ENV }));
    const fn = Object.values(template.findResources('AWS::Lambda::Function'))[0];
    const bundle = path.join(app.outdir, fn.Metadata['aws:asset:path'], 'index.js');
    const code = fs.readFileSync(bundle, 'utf8');
    // THEN it holds no path of the build machine and does not bundle the SDK
    expect(code).not.toContain(path.resolve(__dirname, '..', '..'));
    expect(code).toContain('require("@aws-sdk/client-s3")');
    // AND, run by node with the SDK on NODE_PATH (as in the Lambda runtime), the handler rejects bad input by name
    const script = `require(${JSON.stringify(bundle)}).handler({ datasetName: 'x', datasetSha256: 'bad', method: 'sft' }).catch((e) => console.log(e.name + ': ' + e.message))`;
    const out = execFileSync(process.execPath, ['-e', script], {
      env: { ...process.env, NODE_PATH: path.resolve(__dirname, '..', '..', 'node_modules'), DATA_BUCKET: 'data', NODE_NO_WARNINGS: '1' },
      encoding: 'utf8',
    });
    expect(out).toMatch(/^InvalidInput: dataset version "bad" is not a sha256/);
  });

  test('memory, timeout and concurrency are configurable', () => {
    const { template } = build({ memorySize: 4096, timeout: Duration.minutes(5), reservedConcurrentExecutions: 2 });
    template.hasResourceProperties('AWS::Lambda::Function', { MemorySize: 4096, Timeout: 300, ReservedConcurrentExecutions: 2 });
  });

  test('fails when memorySize is out of range', () => {
    expect(() => build({ memorySize: 128 })).toThrow(/memorySize must be a whole number of MiB from 512 to 10240; got 128/);
  });

  test('fails when the timeout exceeds 15 minutes', () => {
    expect(() => build({ timeout: Duration.minutes(20) })).toThrow(/timeout must be from 30 seconds to 15 minutes.*20 minutes/);
  });

  test('fails when reserved concurrency is 0', () => {
    expect(() => build({ reservedConcurrentExecutions: 0 })).toThrow(/reservedConcurrentExecutions must be a whole number of at least 1.*got 0/);
  });

  test('fails when a reservation is given with reserveConcurrency: false, which reserves none', () => {
    expect(() => build({ reserveConcurrency: false, reservedConcurrentExecutions: 2 })).toThrow(
      /reservedConcurrentExecutions \(2\) needs reserveConcurrency: remove one of them/,
    );
  });

  test('fails when subnets are given without a VPC', () => {
    expect(() => build({ vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_ISOLATED } })).toThrow(/vpcSubnets and securityGroups need a vpc/);
  });
});
