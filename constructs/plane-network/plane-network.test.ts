import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { PLANE_INTERFACE_ENDPOINTS, PlaneNetwork } from './plane-network';
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
});
