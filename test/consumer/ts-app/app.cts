// A user's CDK app that composes Tuneyard's constructs its own way (not FineTuningPlaneStack): the
// platform team's existing bucket, key and VPC; two teams, each with its own pipeline, job name
// prefix and model registry; team A serves LoRA adapters, team B a merged model; dashboards and
// one dashboard and one set of alarms over all of it. test/consumer/run.js installs the packed library and builds this app.
import { App, Stack, StackProps } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import {
  DatasetStore,
  DatasetValidationFunction,
  FineTuningJob,
  FineTuningPipeline,
  ModelRegistry,
  NotificationTopic,
  PlaneAlarms,
  PlaneDashboard,
  TrainingImage,
  UsageMetrics,
  VllmDeployStage,
  VllmEndpoint,
  VllmModelData,
} from 'tuneyard';

/** What the platform team already runs. */
export const EXISTING = {
  bucketName: 'acme-ml-data',
  keyArn: 'arn:aws:kms:eu-west-1:111122223333:key/0f2c9a4e-1b7d-4c1e-9a55-7d2f0c8e6b31',
  vpcId: 'vpc-0a1b2c3d4e5f60718',
  vpcCidrBlock: '10.20.0.0/16',
  availabilityZones: ['eu-west-1a', 'eu-west-1b'],
  isolatedSubnetIds: ['subnet-0a1b2c3d4e5f60718', 'subnet-0f1e2d3c4b5a69788'],
  s3PrefixListId: 'pl-6da54004',
};

export class FineTuningTeamsStack extends Stack {
  constructor(scope: Construct, id: string, props?: StackProps) {
    super(scope, id, props);
    const key = kms.Key.fromKeyArn(this, 'DataKey', EXISTING.keyArn);
    const bucket = s3.Bucket.fromBucketAttributes(this, 'DataBucket', { bucketName: EXISTING.bucketName, encryptionKey: key });
    const store = new DatasetStore(this, 'Data', { bucket, encryptionKey: key });
    const vpc = ec2.Vpc.fromVpcAttributes(this, 'Vpc', {
      vpcId: EXISTING.vpcId,
      vpcCidrBlock: EXISTING.vpcCidrBlock,
      availabilityZones: EXISTING.availabilityZones,
      isolatedSubnetIds: EXISTING.isolatedSubnetIds,
    });
    const network = { vpc, s3PrefixListId: EXISTING.s3PrefixListId };
    const image = TrainingImage.fromBundled(this, 'Trainer');
    const topic = new NotificationTopic(this, 'Notifications').topic;
    const validator = new DatasetValidationFunction(this, 'Validator', { store, vpc });

    // Team A: LoRA adapters on one shared GPU fleet that scales to zero.
    const adapters = new VllmEndpoint(this, 'AdapterEndpoint', {
      ...network,
      instanceType: 'ml.g5.2xlarge',
      baseModel: 'meta-llama/Llama-3.1-8B-Instruct',
      modelData: VllmModelData.fromS3Prefix(bucket, 'base-models/llama-3.1-8b/'),
      inferenceComponents: { minCopies: 0, maxCopies: 2 },
      vllm: { enableLora: true },
    });
    // Team B: merged models, rolled out blue/green.
    const merged = new VllmEndpoint(this, 'MergedEndpoint', {
      ...network,
      instanceType: 'ml.g5.12xlarge',
      baseModel: 'Qwen/Qwen2.5-7B-Instruct',
      modelData: VllmModelData.fromS3Prefix(bucket, 'artifacts/qwen-support/model/full/'),
    });

    const teams = [
      { id: 'TeamA', prefix: 'teama-', endpoint: adapters },
      { id: 'TeamB', prefix: 'teamb-', endpoint: merged },
    ].map((team) => {
      const trainingJob = new FineTuningJob(this, `${team.id}Jobs`, { ...network, store, image, jobNamePrefix: team.prefix });
      const pipeline = new FineTuningPipeline(this, `${team.id}Pipeline`, {
        store,
        trainingJob,
        registry: new ModelRegistry(this, `${team.id}Registry`, { modelPackageGroupName: `${team.id.toLowerCase()}-models` }),
        datasetValidator: validator,
        topic,
        deployStage: new VllmDeployStage({ endpoint: team.endpoint }),
        vpc,
      });
      return { trainingJob, pipeline };
    });

    // One dashboard and one set of alarms over both teams and both endpoints.
    const pipelines = teams.map((t) => t.pipeline);
    const trainingJobs = teams.map((t) => t.trainingJob);
    const endpoints = [adapters, merged];
    const usage = new UsageMetrics(this, 'Usage', { trainingJobs, endpoints, dataStore: store, vpc });
    const alarms = new PlaneAlarms(this, 'Alarms', { topic, pipelines, endpoints });
    new PlaneDashboard(this, 'Dashboard', { dashboardName: 'fine-tuning', dataStore: store, pipelines, trainingJobs, endpoints, usage, alarms: alarms.alarms });
  }
}

if (require.main === module) {
  const app = new App();
  new FineTuningTeamsStack(app, 'FineTuningTeams', { env: { account: '111122223333', region: 'eu-west-1' } });
  app.synth();
}
