import { Duration } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { GATE_REJECTED_ERROR } from '../../constructs/fine-tuning-pipeline';
import { complianceFindings } from '../support/app';
import { definitionFromTemplate } from '../support/local-sfn';
import { pipelineStack } from './pipeline-stack';

const { stack, pipeline } = pipelineStack();
const template = Template.fromStack(stack);
const definition = definitionFromTemplate(template.toJSON());
const states: Array<[string, any]> = Object.entries(definition.States);
const taskStates = states.filter(([, s]) => s.Type === 'Task');

describe('FineTuningPipeline template', () => {
  test('logs ALL events with execution data to a KMS-encrypted log group with retention, with X-Ray on', () => {
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', {
      StateMachineType: 'STANDARD',
      TracingConfiguration: { Enabled: true },
      LoggingConfiguration: { Level: 'ALL', IncludeExecutionData: true, Destinations: [Match.anyValue()] },
    });
    template.hasResourceProperties('AWS::Logs::LogGroup', {
      LogGroupName: Match.stringLikeRegexp('^/aws/vendedlogs/states/'),
      KmsKeyId: Match.anyValue(),
      RetentionInDays: 365,
    });
  });

  test('every Task retries only named transient errors, with backoff and full jitter, and catches everything', () => {
    expect(taskStates.length).toBeGreaterThanOrEqual(15);
    for (const [name, state] of taskStates) {
      // The job states retry nothing: their failures go to the inspection (see the next test).
      const jobState = name === 'Train' || name === 'Evaluate';
      expect({ name, retry: state.Retry?.length > 0 }).toEqual({ name, retry: !jobState });
      for (const retrier of state.Retry ?? []) {
        expect(retrier).toMatchObject({ JitterStrategy: 'FULL', BackoffRate: 2, MaxDelaySeconds: expect.any(Number) });
        // Never States.ALL or States.TaskFailed: a failed training job or a bad dataset fails the same way twice.
        expect(retrier.ErrorEquals).not.toContain('States.ALL');
        expect(retrier.ErrorEquals).not.toContain('States.TaskFailed');
      }
      expect({ name, catchAll: state.Catch?.some((c: any) => c.ErrorEquals.includes('States.ALL')) }).toEqual({ name, catchAll: true });
    }
    // Timeouts are retried only by the Lambdas that are pure or read-only.
    const timeoutRetried = taskStates.filter(([, s]) => (s.Retry ?? []).some((r: any) => r.ErrorEquals.includes('States.Timeout'))).map(([n]) => n);
    expect(timeoutRetried.sort()).toEqual(['InspectEvaluation', 'InspectTraining', 'PlanRun', 'ReadEvalReport', 'ValidateDataset']);
  });

  test('a failed Train or Evaluate state is inspected, never blindly retried: a retried create whose answer was lost would meet ResourceInUse', () => {
    for (const [job, inspect] of [['Train', 'InspectTraining'], ['Evaluate', 'InspectEvaluation']]) {
      expect(definition.States[job].Retry).toBeUndefined();
      expect(definition.States[job].Catch).toEqual([{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: inspect }]);
    }
    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Action: 'sagemaker:DescribeTrainingJob', Resource: 'arn:aws:sagemaker:us-east-1:123456789012:training-job/tuneyard-*' })]) },
      Roles: [{ Ref: Match.stringLikeRegexp('InspectJobFunctionRole') }],
    });
  });

  test('notifies stopped runs with an EventBridge rule on the execution status, with the cause StopExecution was given', () => {
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.states'],
        'detail-type': ['Step Functions Execution Status Change'],
        detail: { status: ['ABORTED'], stateMachineArn: [{ Ref: Match.stringLikeRegexp('^Pipeline') }] },
      },
      Targets: [
        Match.objectLike({
          Arn: { Ref: Match.stringLikeRegexp('^Topic') },
          InputTransformer: {
            InputPathsMap: { 'detail-name': '$.detail.name', 'detail-cause': '$.detail.cause', 'detail-error': '$.detail.error', 'detail-executionArn': '$.detail.executionArn', time: '$.time' },
            InputTemplate: Match.stringLikeRegexp('"outcome":"ABORTED".*"runId":<detail-name>.*"cause":<detail-cause>'),
          },
        }),
      ],
    });
    // EventBridge may publish to the topic and use its key.
    template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Action: 'sns:Publish', Principal: { Service: 'events.amazonaws.com' } })]) },
    });
    template.hasResourceProperties('AWS::KMS::Key', {
      KeyPolicy: { Statement: Match.arrayWith([Match.objectLike({ Action: ['kms:Decrypt', 'kms:GenerateDataKey*'], Principal: { Service: 'events.amazonaws.com' } })]) },
    });
  });

  test('every Task has a timeout', () => {
    for (const [name, state] of taskStates) {
      expect({ name, timeout: state.TimeoutSeconds ?? state.TimeoutSecondsPath }).toEqual({ name, timeout: expect.anything() });
    }
    expect(definition.States.PlanRun.TimeoutSeconds).toBe(900);
  });

  test('every failure path ends in a Fail state named for its cause, after a notification', () => {
    const fails = states.filter(([, s]) => s.Type === 'Fail').map(([n]) => n).sort();
    expect(fails).toEqual(
      ['DatasetInvalid', 'DatasetValidationFailed', 'EvalReportInvalid', 'EvaluationFailed', 'PlanRunFailed', 'RegistrationFailed', 'Rejected', 'RunRequestInvalid', 'TrainingFailed'].sort(),
    );
    for (const fail of fails) {
      const notifier = states.find(([, s]) => s.Next === fail);
      expect(notifier?.[1].Resource).toBe('arn:aws:states:::sns:publish');
    }
    expect(definition.States.Rejected).toEqual({ Type: 'Fail', Error: GATE_REJECTED_ERROR, CausePath: '$.report.summary' });
    expect(definition.States.TrainingFailed).toEqual({ Type: 'Fail', ErrorPath: '$.error.Error', CausePath: '$.error.Cause' });
  });

  test('counts gate rejections with a metric filter on the log group', () => {
    template.hasResourceProperties('AWS::Logs::MetricFilter', {
      FilterPattern: '{ ($.type = "ExecutionFailed") && ($.details.error = "Tuneyard.GateRejected") }',
      MetricTransformations: [Match.objectLike({ MetricNamespace: 'Tuneyard/Pipeline', MetricName: 'RunsRejected', MetricValue: '1' })],
    });
    expect(stack.resolve(pipeline.metricRunsRejected().namespace)).toBe('Tuneyard/Pipeline');
    expect(stack.resolve(pipeline.metricExecutionsFailed().metricName)).toBe('ExecutionsFailed');
  });

  test('passes the four compliance packs with no unacknowledged finding', () => {
    expect(complianceFindings(stack)).toEqual([]);
  });

  test('fails when the timeout is longer than 24 days', () => {
    expect(() => pipelineStack({ timeout: Duration.days(30) })).toThrow(/timeout must be between 1 minute and 24 days; got 30 days/);
  });

  test('measures run duration with the state machine\'s ExecutionTime metric', () => {
    const time = pipeline.metricExecutionTime();
    expect([time.namespace, time.metricName]).toEqual(['AWS/States', 'ExecutionTime']);
    expect(stack.resolve(time.dimensions)).toEqual({ StateMachineArn: stack.resolve(pipeline.stateMachine.stateMachineArn) });
  });
});
