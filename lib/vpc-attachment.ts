import { Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';

/**
 * Lets SageMaker attach a job's or an endpoint's containers to `vpc` with `grantee` (its execution
 * role): create and delete network interfaces only in that VPC (the `ec2:Vpc` condition on the
 * network interface, subnet and security group), and the EC2 Describe calls, which have no
 * resource-level permissions. Returns the resource patterns that carry a wildcard, for the owner
 * of the role to acknowledge (each is limited to the VPC by the condition).
 */
export function grantVpcAttachment(grantee: iam.IGrantable, vpc: ec2.IVpc): string[] {
  const stack = Stack.of(vpc);
  const inVpc = ['network-interface', 'subnet', 'security-group'].map((resource) => stack.formatArn({ service: 'ec2', resource, resourceName: '*' }));
  grantee.grantPrincipal.addToPrincipalPolicy(
    new iam.PolicyStatement({
      sid: 'NetworkInterfacesInTheVpc',
      actions: ['ec2:CreateNetworkInterface', 'ec2:CreateNetworkInterfacePermission', 'ec2:DeleteNetworkInterface', 'ec2:DeleteNetworkInterfacePermission'],
      resources: inVpc,
      conditions: { ArnEquals: { 'ec2:Vpc': stack.formatArn({ service: 'ec2', resource: 'vpc', resourceName: vpc.vpcId }) } },
    }),
  );
  grantee.grantPrincipal.addToPrincipalPolicy(
    new iam.PolicyStatement({
      sid: 'DescribeTheNetwork',
      actions: ['ec2:DescribeNetworkInterfaces', 'ec2:DescribeVpcs', 'ec2:DescribeDhcpOptions', 'ec2:DescribeSubnets', 'ec2:DescribeSecurityGroups'],
      resources: ['*'],
    }),
  );
  return inVpc;
}
