import { App, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { PLANE_INTERFACE_ENDPOINTS, PlaneNetwork } from './plane-network';
import { DatasetStore } from '../dataset-store';
import { FineTuningJob } from '../fine-tuning-job';
import { TrainingImage } from '../training-image';
import { complianceFindings, testStack } from '../../test/support/app';

describe('PlaneNetwork', () => {
  test('creates an isolated two-AZ VPC without NAT or internet gateway, with no context lookup', () => {
    // GIVEN
    const stack = testStack();
    // WHEN
    new PlaneNetwork(stack, 'Network', { s3PrefixListId: 'pl-63a5400a' });
    // THEN
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::EC2::NatGateway', 0);
    template.resourceCountIs('AWS::EC2::InternetGateway', 0);
    template.resourceCountIs('AWS::EC2::Subnet', 2);
    template.allResourcesProperties('AWS::EC2::Subnet', { MapPublicIpOnLaunch: false });
    template.hasResourceProperties('AWS::EC2::Subnet', { AvailabilityZone: 'us-east-1a' });
    template.hasResourceProperties('AWS::EC2::Subnet', { AvailabilityZone: 'us-east-1b' });
    expect(stack.node.metadata.filter((m) => m.type === 'aws:cdk:missing-context')).toEqual([]);
    // the default security group is stripped of its rules
    template.resourceCountIs('Custom::VpcRestrictDefaultSG', 1);
    expect(complianceFindings(stack)).toEqual([]);
  });

  test('uses Fn::GetAZs in an environment-agnostic stack', () => {
    const stack = new Stack(new App(), 'Agnostic');
    new PlaneNetwork(stack, 'Network');
    const subnets = Object.values(Template.fromStack(stack).findResources('AWS::EC2::Subnet'));
    expect(JSON.stringify(subnets[0].Properties.AvailabilityZone)).toContain('Fn::GetAZs');
  });

  test('creates the S3 gateway endpoint and the interface endpoints with private DNS behind one HTTPS-from-VPC group', () => {
    const stack = testStack();
    new PlaneNetwork(stack, 'Network', { s3PrefixListId: 'pl-63a5400a' });
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::EC2::VPCEndpoint', { VpcEndpointType: 'Gateway', ServiceName: { 'Fn::Join': ['', Match.arrayWith([Match.stringLikeRegexp('\\.s3$')])] } });
    const interfaces = Object.values(template.findResources('AWS::EC2::VPCEndpoint', { Properties: { VpcEndpointType: 'Interface' } }));
    expect(interfaces).toHaveLength(Object.keys(PLANE_INTERFACE_ENDPOINTS).length);
    const services = interfaces.map((e) => e.Properties.ServiceName as string).sort();
    expect(services).toEqual(
      ['com.amazonaws.us-east-1.ecr.api', 'com.amazonaws.us-east-1.ecr.dkr', 'com.amazonaws.us-east-1.kms', 'com.amazonaws.us-east-1.logs', 'com.amazonaws.us-east-1.monitoring', 'com.amazonaws.us-east-1.sagemaker.api', 'com.amazonaws.us-east-1.sagemaker.runtime', 'com.amazonaws.us-east-1.sts'],
    );
    for (const e of interfaces) expect(e.Properties.PrivateDnsEnabled).toBe(true);
    template.hasResourceProperties('AWS::EC2::SecurityGroup', {
      GroupDescription: Match.stringLikeRegexp('interface VPC endpoints'),
      SecurityGroupIngress: [{ IpProtocol: 'tcp', FromPort: 443, ToPort: 443, CidrIp: '10.80.0.0/16', Description: 'HTTPS from the VPC' }],
      SecurityGroupEgress: [Match.objectLike({ CidrIp: '255.255.255.255/32' })],
    });
  });

  test('logs all traffic to a KMS-encrypted log group kept for a year', () => {
    const stack = testStack();
    new PlaneNetwork(stack, 'Network', { s3PrefixListId: 'pl-63a5400a' });
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::EC2::FlowLog', { TrafficType: 'ALL', LogDestinationType: 'cloud-watch-logs' });
    template.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 365, KmsKeyId: { 'Fn::GetAtt': [Match.stringLikeRegexp('FlowLogKey'), 'Arn'] } });
    template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
  });

  test('uses an imported VPC as is', () => {
    const stack = testStack();
    const vpc = ec2.Vpc.fromVpcAttributes(stack, 'Imported', { vpcId: 'vpc-1234', availabilityZones: ['us-east-1a'], isolatedSubnetIds: ['subnet-1'] });
    const network = new PlaneNetwork(stack, 'Network', { vpc });
    expect(network.vpc).toBe(vpc);
    expect(stack.node.findAll().some((c) => c instanceof ec2.CfnVPC || c instanceof ec2.CfnVPCEndpoint)).toBe(false);
    expect(network.vpcSubnets).toEqual({});
  });

  test('fails when props conflict or are malformed', () => {
    const stack = testStack();
    const vpc = ec2.Vpc.fromVpcAttributes(stack, 'Imported', { vpcId: 'vpc-1234', availabilityZones: ['us-east-1a'], isolatedSubnetIds: ['subnet-1'] });
    expect(() => new PlaneNetwork(stack, 'A', { vpc, cidr: '10.0.0.0/16' })).toThrow(/configure a VPC that Tuneyard creates/);
    expect(() => new PlaneNetwork(stack, 'B', { s3PrefixListId: 's3' })).toThrow(/s3PrefixListId "s3" is not a prefix list ID/);
    expect(() => new PlaneNetwork(stack, 'C', { availabilityZones: ['us-east-1a'] })).toThrow(/exactly 2 zones/);
  });

  describe('S3 prefix list', () => {
    test('is looked up at deploy time when not given, and the training egress rule uses the lookup', () => {
      // GIVEN
      const stack = testStack();
      // WHEN
      const network = new PlaneNetwork(stack, 'Network');
      new FineTuningJob(stack, 'Job', {
        store: new DatasetStore(stack, 'Store'),
        vpc: network.vpc,
        vpcSubnets: network.vpcSubnets,
        s3PrefixListId: network.s3PrefixListId,
        image: TrainingImage.fromImageUri('123456789012.dkr.ecr.us-east-1.amazonaws.com/tuneyard-trainer:test'),
      });
      // THEN
      const template = Template.fromStack(stack);
      const lookups = template.findResources('Custom::S3PrefixListLookup');
      expect(Object.keys(lookups)).toHaveLength(1);
      const [lookupId, lookup] = Object.entries(lookups)[0];
      for (const phase of ['Create', 'Update']) {
        expect(JSON.parse(lookup.Properties[phase])).toEqual({
          service: 'EC2',
          action: 'describeManagedPrefixLists',
          parameters: { Filters: [{ Name: 'prefix-list-name', Values: ['com.amazonaws.us-east-1.s3'] }] },
          physicalResourceId: { id: 'com.amazonaws.us-east-1.s3' },
          outputPaths: ['PrefixLists.0.PrefixListId'],
        });
      }
      // the Lambda's own SDK, nothing fetched from npm (the plane has no internet route)
      expect(lookup.Properties.InstallLatestAwsSdk).toBe(false);
      const prefixListId = { 'Fn::GetAtt': [lookupId, 'PrefixLists.0.PrefixListId'] };
      expect(stack.resolve(network.s3PrefixListId)).toEqual(prefixListId);
      // a token peer cannot be inlined: the rule is its own resource on the training group
      const [trainingGroupId] = Object.keys(template.findResources('AWS::EC2::SecurityGroup', { Properties: { GroupDescription: Match.stringLikeRegexp('^Tuneyard training jobs') } }));
      template.hasResourceProperties('AWS::EC2::SecurityGroupEgress', {
        GroupId: { 'Fn::GetAtt': [trainingGroupId, 'GroupId'] },
        IpProtocol: 'tcp',
        FromPort: 443,
        ToPort: 443,
        DestinationPrefixListId: prefixListId,
        Description: 'HTTPS to S3 through the gateway endpoint',
      });
      // the provider may only describe prefix lists
      template.hasResourceProperties('AWS::IAM::Policy', {
        PolicyName: Match.stringLikeRegexp('S3PrefixList'),
        PolicyDocument: { Statement: [{ Effect: 'Allow', Action: 'ec2:DescribeManagedPrefixLists', Resource: '*' }], Version: '2012-10-17' },
      });
      // the provider runs on the latest Node.js runtime aws-cdk-lib knows
      const providers = Object.values(template.findResources('AWS::Lambda::Function')).filter((f) => /AWS679f53fa/.test(JSON.stringify(f.Properties.Role)));
      expect(providers.map((f) => f.Properties.Runtime)).toEqual(['nodejs24.x']);
      Annotations.fromStack(stack).hasNoWarning('*', Match.stringLikeRegexp('s3PrefixListId'));
      expect(complianceFindings(stack)).toEqual([]);
    });

    test('names the region in an environment-agnostic stack', () => {
      const stack = new Stack(new App(), 'Agnostic');
      new PlaneNetwork(stack, 'Network');
      const [lookup] = Object.values(Template.fromStack(stack).findResources('Custom::S3PrefixListLookup'));
      const create = JSON.stringify(stack.resolve(lookup.Properties.Create));
      expect(create).toContain('com.amazonaws.');
      expect(create).toContain('{"Ref":"AWS::Region"}');
    });

    test('is looked up for an imported VPC too', () => {
      const stack = testStack();
      const vpc = ec2.Vpc.fromVpcAttributes(stack, 'Imported', { vpcId: 'vpc-1234', availabilityZones: ['us-east-1a'], isolatedSubnetIds: ['subnet-1'], isolatedSubnetRouteTableIds: ['rtb-1'] });
      const network = new PlaneNetwork(stack, 'Network', { vpc });
      Template.fromStack(stack).resourceCountIs('Custom::S3PrefixListLookup', 1);
      expect(JSON.stringify(stack.resolve(network.s3PrefixListId))).toContain('PrefixLists.0.PrefixListId');
      expect(complianceFindings(stack)).toEqual([]);
    });

    test("the lookup function logs to a log group of its own, encrypted with the network's key like every other log group", () => {
      for (const imported of [false, true]) {
        // GIVEN a created VPC, then an imported one
        const stack = testStack();
        const vpc = imported
          ? ec2.Vpc.fromVpcAttributes(stack, 'Imported', { vpcId: 'vpc-1234', availabilityZones: ['us-east-1a'], isolatedSubnetIds: ['subnet-1'] })
          : undefined;
        // WHEN
        new PlaneNetwork(stack, 'Network', { vpc });
        // THEN
        const template = Template.fromStack(stack);
        const logGroups = template.findResources('AWS::Logs::LogGroup');
        expect(Object.keys(logGroups).length).toBe(imported ? 1 : 2);
        for (const [id, group] of Object.entries(logGroups)) {
          expect([id, group.Properties.KmsKeyId]).toEqual([id, { 'Fn::GetAtt': [expect.stringMatching(/^NetworkFlowLogKey/), 'Arn'] }]);
        }
        const [lookupLogs] = Object.keys(template.findResources('AWS::Logs::LogGroup', { Properties: { RetentionInDays: 365 } })).filter((id) => /S3PrefixListLookupLogs/.test(id));
        const providers = Object.values(template.findResources('AWS::Lambda::Function')).filter((f) => /AWS679f53fa/.test(JSON.stringify(f.Properties.Role)));
        expect(providers.map((f) => f.Properties.LoggingConfig)).toEqual([{ LogGroup: { Ref: lookupLogs } }]);
        template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true, Description: Match.stringLikeRegexp('S3 prefix-list lookup') });
        expect(complianceFindings(stack)).toEqual([]);
      }
    });

    test('an explicit id is used as is, with no custom resource', () => {
      const stack = testStack();
      const network = new PlaneNetwork(stack, 'Network', { s3PrefixListId: 'pl-63a5400a' });
      expect(network.s3PrefixListId).toBe('pl-63a5400a');
      const template = Template.fromStack(stack);
      template.resourceCountIs('Custom::S3PrefixListLookup', 0);
      expect(Object.keys(template.findResources('AWS::Lambda::Function')).filter((id) => id.startsWith('AWS679f53fa'))).toEqual([]);
    });
  });
});
