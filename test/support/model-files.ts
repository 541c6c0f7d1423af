import type { S3Client } from '@aws-sdk/client-s3';
import type { ModelFileReader } from '../../lib/reward-vocabulary';

/** PlanRun's model-file reader on `client`, recording each call as `List <prefix>` or `Get <key>`. */
export function recordingModelFiles(client: S3Client): ModelFileReader & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    send: (async (command: any) => {
      calls.push(`${command.constructor.name.replace(/Objects?V?2?Command$/, '')} ${command.input.Prefix ?? command.input.Key}`);
      return client.send(command);
    }) as any,
  };
}
