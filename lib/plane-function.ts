import { ArnFormat, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { bundledCode, LAMBDA_RUNTIME } from './bundle';
import { acknowledge, inControlPacks } from './nag';

/** How one of the plane's Lambda functions is made. */
export interface PlaneFunctionOptions {
  /** The handler's path without extension (see {@link bundledCode}). */
  readonly entry: string;
  readonly description: string;
  readonly memorySize: number;
  readonly timeout: Duration;
  /** Reserved (and capped) concurrency; undefined reserves none (an account whose limit is 10 cannot). */
  readonly reservedConcurrentExecutions?: number;
  readonly environment?: Record<string, string>;
  /** The key that encrypts the function's log group. */
  readonly logEncryptionKey: kms.IKey;
  readonly logRetention: logs.RetentionDays;
  readonly removalPolicy: RemovalPolicy;
  readonly vpc?: ec2.IVpc;
  readonly vpcSubnets?: ec2.SubnetSelection;
  readonly securityGroups?: ec2.ISecurityGroup[];
  /** Construct ids of the function, its role and its log group (ids are a contract: they name the resources). */
  readonly ids: { readonly function: string; readonly role: string; readonly logGroup: string };
  /** Why the function may run outside a VPC, when `vpc` is not given. */
  readonly outsideVpcReason: string;
  /** What the role's own statements are scoped to, for the inline-policy acknowledgement. */
  readonly policyScope: string;
  /**
   * Why the function needs no dead-letter queue.
   *
   * @default - it is invoked synchronously by the state machine, which catches and notifies every failure
   */
  readonly dlqReason?: string;
}

/** A function made by {@link createPlaneFunction}. */
export interface PlaneFunction {
  readonly function: lambda.Function;
  readonly role: iam.Role;
  readonly logGroup: logs.LogGroup;
}

/**
 * One of the plane's Lambda functions, all made the same way: bundled at synth, arm64 on the
 * current Node.js runtime, X-Ray on, JSON logs into a KMS-encrypted log group with retention, an
 * explicit role (no AWSLambdaBasicExecutionRole: its logs:* on every log group is wider than this
 * one group), reserved concurrency unless turned off, optionally in a VPC; and the compliance findings that every such
 * function raises, acknowledged with their reasons.
 */
export function createPlaneFunction(scope: Construct, options: PlaneFunctionOptions): PlaneFunction {
  const logGroup = new logs.LogGroup(scope, options.ids.logGroup, {
    encryptionKey: options.logEncryptionKey,
    retention: options.logRetention,
    removalPolicy: options.removalPolicy,
  });
  const role = new iam.Role(scope, options.ids.role, { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'), description: options.description });
  logGroup.grantWrite(role);
  const vpc = options.vpc;
  if (vpc) role.addManagedPolicy(iam.ManagedPolicy.fromAwsManagedPolicyName('service-role/AWSLambdaVPCAccessExecutionRole'));
  const fn = new lambda.Function(scope, options.ids.function, {
    runtime: LAMBDA_RUNTIME,
    architecture: lambda.Architecture.ARM_64,
    handler: 'index.handler',
    code: bundledCode(options.entry),
    description: options.description,
    role,
    logGroup,
    loggingFormat: lambda.LoggingFormat.JSON,
    memorySize: options.memorySize,
    timeout: options.timeout,
    reservedConcurrentExecutions: options.reservedConcurrentExecutions,
    environment: options.environment,
    tracing: lambda.Tracing.ACTIVE,
    vpc,
    vpcSubnets: vpc ? options.vpcSubnets : undefined,
    securityGroups: options.securityGroups,
  });

  const policy = role.node.tryFindChild('DefaultPolicy') ?? role;
  acknowledge(policy, {
    'AwsSolutions-IAM5[Resource::*]': 'X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions.',
    ...inControlPacks(
      'IAMNoInlinePolicy',
      `The statements belong to this function's own role alone (nothing to share or version separately); each is scoped to ${options.policyScope}.`,
    ),
  });
  if (vpc) {
    acknowledge(role, {
      'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole]':
        'The AWS-managed policy holds exactly the ENI permissions Lambda needs to attach to the VPC (they allow no resource scoping).',
    });
  }
  acknowledge(fn, {
    ...inControlPacks(
      'LambdaDLQ',
      options.dlqReason ??
        'Invoked synchronously by the state machine, which catches and notifies every failure; a DLQ only applies to asynchronous invocations.',
      ['HIPAA.Security', 'NIST.800.53.R5'],
    ),
    ...(options.reservedConcurrentExecutions === undefined
      ? inControlPacks(
          'LambdaConcurrency',
          'Reservation turned off (reserveConcurrency: false): Lambda keeps 100 units of the account limit unreserved, so an account whose limit is 10 cannot reserve any.',
          ['HIPAA.Security', 'NIST.800.53.R5'],
        )
      : {}),
    ...(vpc ? {} : inControlPacks('LambdaInsideVPC', `No VPC was given: ${options.outsideVpcReason} Pass \`vpc\` to run it in the plane VPC.`)),
  });
  return { function: fn, role, logGroup };
}

/**
 * A KMS key with yearly rotation for the plane's log groups: its policy lets CloudWatch Logs of
 * this region use it for any log group of this account (the encryption context names the group).
 */
export function createLogKey(scope: Construct, id: string, description: string, removalPolicy: RemovalPolicy): kms.Key {
  const stack = Stack.of(scope);
  const key = new kms.Key(scope, id, { description, enableKeyRotation: true, removalPolicy });
  key.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: 'AllowCloudWatchLogs',
      principals: [new iam.ServicePrincipal(`logs.${stack.region}.amazonaws.com`)],
      actions: ['kms:Encrypt*', 'kms:Decrypt*', 'kms:ReEncrypt*', 'kms:GenerateDataKey*', 'kms:Describe*'],
      resources: ['*'],
      conditions: {
        ArnLike: { 'kms:EncryptionContext:aws:logs:arn': stack.formatArn({ service: 'logs', resource: 'log-group', resourceName: '*', arnFormat: ArnFormat.COLON_RESOURCE_NAME }) },
      },
    }),
  );
  return key;
}
