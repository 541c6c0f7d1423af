import { CloudFormationClient, CreateStackCommand } from '@aws-sdk/client-cloudformation';
import { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import { S3Client } from '@aws-sdk/client-s3';
import { SageMakerClient } from '@aws-sdk/client-sagemaker';
import { SageMakerRuntimeClient } from '@aws-sdk/client-sagemaker-runtime';
import { CreateStateMachineCommand, SFNClient } from '@aws-sdk/client-sfn';
import { STSClient } from '@aws-sdk/client-sts';
import * as http from 'node:http';
import { AwsClients } from '../../lib/cli/run-client';
import { MotoServer, startMoto } from '../support/moto';

/**
 * A stand-in Tuneyard plane on a moto server: a CloudFormation stack with the data bucket, a state
 * machine and the outputs the real stack exports (test/fine-tuning-plane-stack.test.ts checks those).
 * moto is not AWS: the state machine is the definition given here, not the pipeline.
 */
export interface MotoPlane {
  readonly moto: MotoServer;
  readonly clients: AwsClients;
  readonly bucket: string;
  readonly factory: () => AwsClients;
  stop(): Promise<void>;
}

export interface MotoPlaneOptions {
  readonly bucket: string;
  /** The state machine's definition (default: one Pass state named PlanRun). */
  readonly definition?: object;
  /** Extra stack outputs, e.g. AllowHubModels. */
  readonly outputs?: Record<string, string>;
  /**
   * Let moto run executions through the definition (its Step Functions parser) instead of leaving
   * them RUNNING with a canned history.
   */
  readonly executeStateMachine?: boolean;
}

/** The CLI's AWS clients, pointed at a moto server (S3 path-style). */
export function motoClients(moto: MotoServer): AwsClients {
  const config = moto.clientConfig;
  return {
    cloudformation: new CloudFormationClient(config),
    s3: new S3Client({ ...config, forcePathStyle: true }),
    sfn: new SFNClient(config),
    sagemaker: new SageMakerClient(config),
    logs: new CloudWatchLogsClient(config),
    runtime: new SageMakerRuntimeClient(config),
    sts: new STSClient(config),
  };
}

export async function startMotoPlane(options: MotoPlaneOptions): Promise<MotoPlane> {
  const moto = await startMoto('us-east-1');
  if (options.executeStateMachine) await motoConfig(moto.endpoint, { stepfunctions: { execute_state_machine: true } });
  const clients = motoClients(moto);
  // Made through the Step Functions API, not the template: with execute_state_machine on, moto runs
  // executions in another backend than the one its CloudFormation writes to.
  const { stateMachineArn } = await clients.sfn.send(
    new CreateStateMachineCommand({
      name: 'TuneyardPipeline',
      roleArn: 'arn:aws:iam::123456789012:role/TuneyardPipeline',
      definition: JSON.stringify(options.definition ?? { StartAt: 'PlanRun', States: { PlanRun: { Type: 'Pass', End: true } } }),
    }),
  );
  const template = {
    Resources: {
      Data: { Type: 'AWS::S3::Bucket', Properties: { BucketName: options.bucket } },
    },
    Outputs: {
      StateMachineArn: { Value: stateMachineArn },
      DataBucketName: { Value: { Ref: 'Data' } },
      TrainingJobPrefix: { Value: 'tuneyard-' },
      ...Object.fromEntries(Object.entries(options.outputs ?? {}).map(([k, v]) => [k, { Value: v }])),
    },
  };
  await clients.cloudformation.send(new CreateStackCommand({ StackName: 'Tuneyard', TemplateBody: JSON.stringify(template) }));
  return {
    moto,
    clients,
    bucket: options.bucket,
    factory: () => clients,
    stop: async () => {
      for (const client of Object.values(clients)) client.destroy();
      await moto.stop();
    },
  };
}

/** POSTs moto's runtime configuration (moto-api/config). */
function motoConfig(endpoint: string, body: object): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${endpoint}/moto-api/config`, { method: 'POST', headers: { 'content-type': 'application/json' }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode && res.statusCode < 300 ? resolve() : reject(new Error(`moto-api/config answered ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}
