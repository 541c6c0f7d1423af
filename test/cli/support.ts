import { AwsClients, ClientOptions } from '../../lib/cli/run-client';
import { CliDeps, runCli } from '../../lib/cli/program';

/** What one CLI invocation printed and returned. */
export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the CLI in-process with captured output. */
export async function cli(argv: string[], deps: Partial<Omit<CliDeps, 'io'>> & { tty?: boolean } = {}): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, {
    ...deps,
    io: { out: (s) => void (stdout += s), err: (s) => void (stderr += s), errIsTTY: deps.tty ?? false, columns: 100 },
    sleep: deps.sleep ?? (async () => undefined),
  });
  return { code, stdout, stderr };
}

export type Handler = (input: Record<string, unknown>) => unknown;

/** A call a fake client received: the command's class name and its input. */
export interface Call {
  readonly command: string;
  readonly input: Record<string, unknown>;
}

/**
 * Fake AWS clients: each command (by class name, e.g. `DescribeStacksCommand`) is answered by a
 * handler; a command without one fails the test. Every call is recorded in `calls`.
 */
export function fakeClients(handlers: Record<string, Handler>, region = 'us-east-1'): { factory: (o: ClientOptions) => AwsClients; calls: Call[] } {
  const calls: Call[] = [];
  const client = {
    config: { region: async () => region },
    send: async (command: { constructor: { name: string }; input: Record<string, unknown> }) => {
      const name = command.constructor.name;
      calls.push({ command: name, input: command.input });
      const handler = handlers[name];
      if (!handler) throw new Error(`unexpected AWS call ${name}`);
      return handler(command.input);
    },
  };
  const clients = { cloudformation: client, s3: client, sfn: client, sagemaker: client, logs: client, runtime: client, sts: client } as unknown as AwsClients;
  return { factory: () => clients, calls };
}

/** An SDK-shaped error (the name is what the CLI looks at). */
export function awsError(name: string, message: string): Error {
  const e = new Error(message);
  e.name = name;
  return e;
}

/** DescribeStacks of a plane with every output. */
export const PLANE_OUTPUTS = {
  DescribeStacksCommand: () => ({
    Stacks: [
      {
        StackName: 'Tuneyard',
        Outputs: [
          { OutputKey: 'StateMachineArn', OutputValue: 'arn:aws:states:us-east-1:123456789012:stateMachine:Tuneyard' },
          { OutputKey: 'DataBucketName', OutputValue: 'tuneyard-data' },
          { OutputKey: 'ModelPackageGroupName', OutputValue: 'tuneyard-models' },
          { OutputKey: 'TrainingJobPrefix', OutputValue: 'tuneyard-' },
        ],
      },
    ],
  }),
};
