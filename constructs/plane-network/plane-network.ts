import { ArnFormat, RemovalPolicy, Stack, Token, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct, IConstruct } from 'constructs';
import { TuneyardValidationError } from '../../lib/errors';
import { acknowledge, inControlPacks } from '../../lib/nag';

/**
 * The interface endpoints the plane creates, and why. Training jobs run with network isolation
 * (their containers have no network), but SageMaker's agents on the instance reach these through
 * the job's network interfaces; the Lambdas and endpoints in the VPC use them too.
 */
export const PLANE_INTERFACE_ENDPOINTS: Record<string, { service: ec2.InterfaceVpcEndpointAwsService; why: string }> = {
  SageMakerApi: { service: ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_API, why: 'SageMaker API calls from inside the VPC' },
  SageMakerRuntime: { service: ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_RUNTIME, why: 'invoking endpoints from inside the VPC' },
  Sts: { service: ec2.InterfaceVpcEndpointAwsService.STS, why: 'role credentials' },
  Logs: { service: ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS, why: 'job, endpoint and Lambda logs' },
  EcrApi: { service: ec2.InterfaceVpcEndpointAwsService.ECR, why: 'image pulls (authorization, manifests)' },
  EcrDocker: { service: ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER, why: 'image pulls (layers come from S3 through the gateway endpoint)' },
  Monitoring: { service: ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING, why: 'job and endpoint metrics' },
  Kms: { service: ec2.InterfaceVpcEndpointAwsService.KMS, why: 'the data key (S3 SSE-KMS, volumes)' },
};

/** Properties of a {@link PlaneNetwork}. */
export interface PlaneNetworkProps {
  /**
   * An existing VPC (import it with `ec2.Vpc.fromVpcAttributes`: no lookups at synth). The plane
   * then creates no VPC, endpoints or flow logs: the VPC's owner provides S3 and the interface
   * endpoints of {@link PLANE_INTERFACE_ENDPOINTS} (or a NAT route).
   *
   * @default - a new VPC as described on {@link PlaneNetwork}
   */
  readonly vpc?: ec2.IVpc;
  /**
   * The subnets of the plane's jobs, endpoints and functions in an imported VPC.
   *
   * @default - the VPC's private subnets
   */
  readonly vpcSubnets?: ec2.SubnetSelection;
  /**
   * The new VPC's IPv4 range.
   *
   * @default '10.80.0.0/16'
   */
  readonly cidr?: string;
  /**
   * The new VPC's two Availability Zones.
   *
   * @default - `<region>a` and `<region>b` when the stack's region is known, else the first two
   * zones of `Fn::GetAZs` (no context lookup either way)
   */
  readonly availabilityZones?: string[];
  /**
   * The ID of the region's S3 managed prefix list (`com.amazonaws.<region>.s3`), so security
   * groups can allow HTTPS to the S3 gateway endpoint (`aws ec2 describe-managed-prefix-lists`).
   *
   * @default - looked up at deploy time: a custom resource calls EC2 DescribeManagedPrefixLists
   * for `com.amazonaws.<region>.s3` (no synth-time lookup, no credentials needed to synthesize)
   */
  readonly s3PrefixListId?: string;
  /**
   * How long VPC flow logs are kept.
   *
   * @default logs.RetentionDays.ONE_YEAR
   */
  readonly flowLogRetention?: logs.RetentionDays;
  /**
   * What happens to the network's log groups (flow logs, the S3 prefix-list lookup) and their key
   * when they leave the stack.
   *
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
}

/**
 * The plane's network: by default a VPC with private isolated subnets only in two Availability
 * Zones (no internet gateway, no NAT), the S3 gateway endpoint, the interface endpoints of
 * {@link PLANE_INTERFACE_ENDPOINTS} (private DNS, one security group admitting HTTPS from the VPC
 * CIDR only), flow logs of all traffic to a KMS-encrypted log group, and the default security
 * group stripped of its rules. Or an imported VPC.
 *
 * Cost of the default: 8 interface endpoints × 2 AZs × $0.01/h ≈ $117 per month plus $0.01 per
 * GB processed (us-east-1 prices); the gateway endpoint is free; flow logs are billed as
 * CloudWatch Logs ingestion and storage.
 */
export class PlaneNetwork extends Construct {
  /** The VPC. */
  public readonly vpc: ec2.IVpc;
  /** The subnets the plane's jobs, endpoints and functions use. */
  public readonly vpcSubnets: ec2.SubnetSelection;
  /**
   * The ID of the region's S3 managed prefix list: the one given, or a token that the deploy-time
   * lookup resolves. Security groups allow HTTPS to S3 with `ec2.Peer.prefixList(s3PrefixListId)`.
   */
  public readonly s3PrefixListId: string;
  /** The security group of the interface endpoints (only for a VPC this construct created). */
  public readonly endpointSecurityGroup?: ec2.ISecurityGroup;
  /** The flow log group (only for a VPC this construct created). */
  public readonly flowLogGroup?: logs.ILogGroup;
  /**
   * The customer-managed key (with rotation) of the network's log groups: the flow logs and the
   * S3 prefix-list lookup's function logs (none when the construct creates neither).
   */
  public readonly logEncryptionKey?: kms.IKey;

  constructor(scope: Construct, id: string, props: PlaneNetworkProps = {}) {
    super(scope, id);
    if (props.s3PrefixListId !== undefined && !Token.isUnresolved(props.s3PrefixListId) && !/^pl-[0-9a-f]{8,17}$/.test(props.s3PrefixListId)) {
      throw new TuneyardValidationError(
        `s3PrefixListId "${props.s3PrefixListId}" is not a prefix list ID; use the pl-... ID of com.amazonaws.<region>.s3 (aws ec2 describe-managed-prefix-lists), or leave it out to look it up at deploy time.`,
        this,
      );
    }
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    if (!props.vpc || props.s3PrefixListId === undefined) this.logEncryptionKey = this.createLogKey(removalPolicy);
    this.s3PrefixListId = props.s3PrefixListId ?? this.lookUpS3PrefixList(removalPolicy);
    if (props.vpc) {
      if (props.cidr || props.availabilityZones || props.flowLogRetention) {
        throw new TuneyardValidationError('cidr, availabilityZones and flowLogRetention configure a VPC that Tuneyard creates; remove them, or drop `vpc`.', this);
      }
      this.vpc = props.vpc;
      this.vpcSubnets = props.vpcSubnets ?? {};
      return;
    }
    if (props.vpcSubnets) throw new TuneyardValidationError('vpcSubnets applies to an imported `vpc` only; remove it.', this);

    const stack = Stack.of(this);
    const availabilityZones = props.availabilityZones ?? (Token.isUnresolved(stack.region) ? undefined : [`${stack.region}a`, `${stack.region}b`]);
    if (availabilityZones && availabilityZones.length !== 2) {
      throw new TuneyardValidationError(`availabilityZones must name exactly 2 zones; got ${JSON.stringify(availabilityZones)}.`, this);
    }
    const cidr = props.cidr ?? '10.80.0.0/16';
    const vpc = new ec2.Vpc(this, 'Resource', {
      ipAddresses: ec2.IpAddresses.cidr(cidr),
      ...(availabilityZones ? { availabilityZones } : { maxAzs: 2 }),
      natGateways: 0,
      subnetConfiguration: [{ name: 'isolated', subnetType: ec2.SubnetType.PRIVATE_ISOLATED, cidrMask: 20 }],
      restrictDefaultSecurityGroup: true,
    });
    this.vpc = vpc;
    this.vpcSubnets = { subnetType: ec2.SubnetType.PRIVATE_ISOLATED };

    const flowLogGroup = new logs.LogGroup(this, 'FlowLogs', {
      encryptionKey: this.logEncryptionKey,
      retention: props.flowLogRetention ?? logs.RetentionDays.ONE_YEAR,
      removalPolicy,
    });
    const flowLogRole = new iam.Role(this, 'FlowLogRole', { assumedBy: new iam.ServicePrincipal('vpc-flow-logs.amazonaws.com') });
    vpc.addFlowLog('FlowLog', { destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogGroup, flowLogRole), trafficType: ec2.FlowLogTrafficType.ALL });
    const flowLogPolicy = flowLogRole.node.tryFindChild('DefaultPolicy');
    acknowledge(
      flowLogPolicy,
      inControlPacks('IAMNoInlinePolicy', "The flow log role's own statements (write to this one log group), generated by the flow log; nothing to share."),
    );
    this.flowLogGroup = flowLogGroup;

    vpc.addGatewayEndpoint('S3', { service: ec2.GatewayVpcEndpointAwsService.S3, subnets: [this.vpcSubnets] });

    const endpointSecurityGroup = new ec2.SecurityGroup(this, 'EndpointSecurityGroup', {
      vpc,
      description: 'Tuneyard interface VPC endpoints: HTTPS from the VPC only',
      allowAllOutbound: false,
    });
    // The literal range (not the VPC's CidrBlock attribute) so the compliance packs can see it is private.
    endpointSecurityGroup.addIngressRule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(443), 'HTTPS from the VPC');
    this.endpointSecurityGroup = endpointSecurityGroup;
    for (const [endpointId, { service }] of Object.entries(PLANE_INTERFACE_ENDPOINTS)) {
      vpc.addInterfaceEndpoint(endpointId, {
        service,
        privateDnsEnabled: true,
        subnets: this.vpcSubnets,
        securityGroups: [endpointSecurityGroup],
        open: false,
      });
    }
  }

  /**
   * Adds an interface endpoint for a service that an optional part of the plane calls (Bedrock
   * Runtime for the pipeline's LLM judge) to the VPC this construct created, with the endpoints'
   * security group (HTTPS from the VPC only). An imported VPC is its owner's: nothing is added, and
   * the owner provides the endpoint (or a NAT route).
   *
   * @returns the endpoint, or undefined for an imported VPC
   */
  public addServiceEndpoint(id: string, service: ec2.InterfaceVpcEndpointAwsService): ec2.InterfaceVpcEndpoint | undefined {
    if (!this.endpointSecurityGroup) return undefined;
    return this.vpc.addInterfaceEndpoint(id, { service, privateDnsEnabled: true, subnets: this.vpcSubnets, securityGroups: [this.endpointSecurityGroup], open: false });
  }

  /**
   * The key of the network's log groups, which CloudWatch Logs may use for this account's log
   * groups. Its id stays 'FlowLogKey' (the key of the first release's flow logs) so that an
   * update does not replace it.
   */
  private createLogKey(removalPolicy: RemovalPolicy): kms.Key {
    const stack = Stack.of(this);
    const key = new kms.Key(this, 'FlowLogKey', {
      description: 'Tuneyard network logs (VPC flow logs, S3 prefix-list lookup)',
      enableKeyRotation: true,
      removalPolicy,
    });
    key.addToResourcePolicy(
      new iam.PolicyStatement({
        actions: ['kms:Encrypt*', 'kms:Decrypt*', 'kms:ReEncrypt*', 'kms:GenerateDataKey*', 'kms:Describe*'],
        principals: [new iam.ServicePrincipal(`logs.${stack.region}.amazonaws.com`)],
        resources: ['*'],
        conditions: { ArnLike: { 'kms:EncryptionContext:aws:logs:arn': stack.formatArn({ service: 'logs', resource: 'log-group', resourceName: '*', arnFormat: ArnFormat.COLON_RESOURCE_NAME }) } },
      }),
    );
    return key;
  }

  /**
   * A custom resource that reads the ID of the region's S3 prefix list at deploy time. Its
   * provider is the stack's singleton AwsCustomResource Lambda (the latest Node.js runtime that
   * aws-cdk-lib knows for the region; the SDK built into the runtime, nothing installed from npm).
   *
   * The Lambda runs outside the VPC: it makes one read-only EC2 call at deploy time and handles no
   * plane data. Inside the isolated VPC it would need an EC2 interface endpoint (~$15 a month for
   * one call per deployment) and HTTPS egress to S3 for its CloudFormation response, through the
   * very prefix list it looks up; in an imported VPC neither can be assumed. Its logs go to a log
   * group of this construct, encrypted with {@link logEncryptionKey} and kept a year (the
   * provider is the stack's singleton: the first AwsCustomResource of the stack names its log group).
   */
  private lookUpS3PrefixList(removalPolicy: RemovalPolicy): string {
    const stack = Stack.of(this);
    const prefixListName = `com.amazonaws.${stack.region}.s3`;
    const logGroup = new logs.LogGroup(this, 'S3PrefixListLookupLogs', {
      encryptionKey: this.logEncryptionKey,
      retention: logs.RetentionDays.ONE_YEAR,
      removalPolicy,
    });
    const lookup = new cr.AwsCustomResource(this, 'S3PrefixList', {
      resourceType: 'Custom::S3PrefixListLookup',
      onUpdate: {
        service: 'EC2',
        action: 'describeManagedPrefixLists',
        parameters: { Filters: [{ Name: 'prefix-list-name', Values: [prefixListName] }] },
        physicalResourceId: cr.PhysicalResourceId.of(prefixListName),
        outputPaths: ['PrefixLists.0.PrefixListId'],
      },
      policy: cr.AwsCustomResourcePolicy.fromStatements([
        new iam.PolicyStatement({ actions: ['ec2:DescribeManagedPrefixLists'], resources: ['*'] }),
      ]),
      installLatestAwsSdk: false,
      logGroup,
    });
    const policy = lookup.node.tryFindChild('CustomResourcePolicy');
    if (policy) {
      Validations.of(policy).acknowledge({
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason: 'ec2:DescribeManagedPrefixLists supports no resource-level permissions (Resource must be *); it is the only action, and read-only.',
      });
      acknowledge(
        policy,
        inControlPacks('IAMNoInlinePolicy', "The prefix-list lookup's single read-only statement, generated by AwsCustomResource for its provider role; nothing to share."),
      );
    }
    acknowledgeCustomResourceProvider(stack);
    return lookup.getResponseField('PrefixLists.0.PrefixListId');
  }
}

/**
 * Acknowledges the findings on the stack's singleton AwsCustomResource provider (its Lambda and
 * role), one rule at a time. The provider only serves CloudFormation custom resources of this
 * stack, at deploy time.
 */
function acknowledgeCustomResourceProvider(stack: Stack): void {
  const provider = stack.node.tryFindChild(`AWS${cr.AwsCustomResource.PROVIDER_FUNCTION_UUID.replace(/-/g, '')}`);
  if (!provider) return;
  const fn = provider.node.defaultChild as IConstruct | undefined;
  const role = provider.node.tryFindChild('ServiceRole');
  if (role) {
    Validations.of(role).acknowledge({
      id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
      reason: 'The AwsCustomResource provider role that aws-cdk-lib creates: the AWS managed policy only lets the function write its own CloudWatch logs.',
    });
  }
  acknowledge(fn, {
    ...inControlPacks(
      'LambdaInsideVPC',
      'The AwsCustomResource provider makes read-only AWS API calls at deploy time (the S3 prefix-list lookup) and handles no plane data; in the isolated VPC it would need an EC2 interface endpoint and S3 egress for its CloudFormation response.',
    ),
    ...inControlPacks(
      'LambdaConcurrency',
      'The AwsCustomResource provider is invoked only by CloudFormation, a few times per deployment of this stack; reserved concurrency would only take capacity from the account.',
    ),
    ...inControlPacks(
      'LambdaDLQ',
      'The AwsCustomResource provider reports every outcome to CloudFormation, which fails and rolls back the deployment on an error; a dead-letter queue would hold nothing to act on.',
    ),
  });
}
