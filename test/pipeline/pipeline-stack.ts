import { Stack, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { DatasetStore } from '../../constructs/dataset-store';
import { DatasetValidationFunction } from '../../constructs/dataset-validator';
import { FineTuningJob } from '../../constructs/fine-tuning-job';
import { FineTuningPipeline, FineTuningPipelineProps } from '../../constructs/fine-tuning-pipeline';
import { ModelRegistry } from '../../constructs/model-registry';
import { NotificationTopic } from '../../constructs/notification-topic';
import { TrainingImage } from '../../constructs/training-image';
import { TEST_ENV, testApp } from '../support/app';

/** A stack with the pipeline and the real constructs around it, each passed explicitly (a job in a VPC). */
export function pipelineStack(overrides: Partial<FineTuningPipelineProps> = {}) {
  const stack = new Stack(testApp(), 'Pipeline', { env: TEST_ENV });
  const store = new DatasetStore(stack, 'Store');
  const vpc = new ec2.Vpc(stack, 'Vpc', { natGateways: 0, subnetConfiguration: [{ name: 'isolated', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }] });
  vpc.addFlowLog('FlowLogs');
  Validations.of(vpc).acknowledge({ id: 'AwsSolutions-VPC7', reason: 'Test VPC: the flow log goes to CloudWatch Logs (the rule looks for another form).' });
  for (const pack of ['HIPAA.Security', 'NIST.800.53.R5', 'PCI.DSS.321']) {
    for (const rule of ['IAMNoInlinePolicy', 'CloudWatchLogGroupEncrypted']) Validations.of(vpc).acknowledge({ id: `${pack}-${rule}`, reason: 'The test VPC flow log (the plane uses PlaneNetwork).' });
  }
  const trainingJob = new FineTuningJob(stack, 'Jobs', {
    store,
    vpc,
    s3PrefixListId: 'pl-12345678',
    image: TrainingImage.fromImageUri('123456789012.dkr.ecr.us-east-1.amazonaws.com/tuneyard-trainer:test'),
  });
  const validator = new DatasetValidationFunction(stack, 'Validator', { store });
  const topic = new NotificationTopic(stack, 'Topic');
  const pipeline = new FineTuningPipeline(stack, 'Pipeline', {
    store,
    trainingJob,
    registry: new ModelRegistry(stack, 'Registry', { inferenceImageUri: '763104351884.dkr.ecr.us-east-1.amazonaws.com/vllm:server-sagemaker-cuda-v1.0' }),
    datasetValidator: validator,
    topic: topic.topic,
    ...overrides,
  });
  return { stack, store, pipeline, topic, trainingJob, validator };
}
