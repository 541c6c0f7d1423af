import { Command } from 'commander';
import { positiveInt, nonNegativeNumber } from '../args';
import { CliError } from '../errors';
import { table, time } from '../format';
import type { CommandContext } from '../program';

export function registerModelCommands(program: Command, ctx: CommandContext): void {
  program
    .command('models')
    .description('List the models the pipeline registered (the plane\'s SageMaker model package group), newest first.')
    .action(async (_opts: unknown, command: Command) => {
      ctx.use(command);
      const models = await ctx.runClient().listModels();
      ctx.print(
        models.map((m) => ({
          version: m.ModelPackageVersion,
          approval: m.ModelApprovalStatus,
          status: m.ModelPackageStatus,
          created: m.CreationTime,
          arn: m.ModelPackageArn,
          description: m.ModelPackageDescription,
        })),
        models.length
          ? table(
              ['VERSION', 'APPROVAL', 'CREATED', 'DESCRIPTION'],
              models.map((m) => [String(m.ModelPackageVersion ?? '-'), m.ModelApprovalStatus ?? '-', time(m.CreationTime), m.ModelPackageDescription ?? '']),
            )
          : 'no models registered yet: a run registers one when it passes the eval gate\n',
      );
    });

  program
    .command('deploy')
    .description(
      'Approve a registered model for deployment and print how to serve it. It does not create or update an endpoint: ' +
        'the pipeline deploys inside a run (`tuneyard train --deploy-endpoint E --adapter A`).',
    )
    .argument('<model>', 'model version (from `tuneyard models`) or model package ARN')
    .option('--adapter <name>', 'the adapter name to serve it as (printed in the next step)')
    .option('--endpoint <name>', 'the vLLM endpoint meant to serve it (printed in the next step)')
    .action(async (model: string, opts: { adapter?: string; endpoint?: string }, command: Command) => {
      ctx.use(command);
      const client = ctx.runClient();
      const described = await client.describeModel(model);
      const arn = described.ModelPackageArn!;
      const version = described.ModelPackageVersion;
      if (described.ModelApprovalStatus === 'Rejected') {
        throw new CliError(`model version ${version} was rejected (${described.ApprovalDescription ?? 'no reason given'}): not approving it; pick another with \`tuneyard models\``);
      }
      const wasApproved = described.ModelApprovalStatus === 'Approved';
      if (!wasApproved) await client.approveModel(arn, `approved with \`tuneyard deploy\`${opts.endpoint ? ` for ${opts.endpoint}` : ''}`);
      const container = described.InferenceSpecification?.Containers?.[0];
      const artifacts = container?.ModelDataSource?.S3DataSource?.S3Uri ?? container?.ModelDataUrl;
      const adapter = opts.adapter ?? `model-v${version}`;
      const endpoint = opts.endpoint ?? '<endpoint>';
      ctx.print(
        { arn, version, approval: 'Approved', wasApproved, artifacts, adapter, endpoint: opts.endpoint },
        `${wasApproved ? 'model version ' + version + ' was already approved' : 'approved model version ' + version}\n` +
          `  ${arn}\n` +
          (artifacts ? `  artifacts: ${artifacts}\n` : '') +
          'next: serve it with a VllmEndpoint in your CDK app (endpoint.addAdapter(...) with these artifacts), ' +
          'or let a run deploy it:\n' +
          `  tuneyard train ... --deploy-endpoint ${endpoint} --adapter ${adapter}\n` +
          `then: tuneyard invoke --endpoint ${endpoint} --adapter ${adapter} "Hello"\n`,
      );
    });

  program
    .command('invoke')
    .description('Send one chat message to a vLLM endpoint (OpenAI chat-completions payload) and print the reply.')
    .requiredOption('--endpoint <name>', 'SageMaker endpoint name')
    .argument('<prompt>', 'the user message')
    .option('--adapter <name>', 'LoRA adapter to answer with (the payload\'s "model")')
    .option('--model <name>', 'served model name when no adapter is given (default: the endpoint\'s only model)')
    .option('--component <name>', 'inference component to route to (endpoints that serve adapters as inference components)')
    .option('--max-tokens <n>', 'longest reply in tokens', positiveInt, 256)
    .option('--temperature <t>', 'sampling temperature', nonNegativeNumber)
    .action(async (prompt: string, opts: { endpoint: string; adapter?: string; model?: string; component?: string; maxTokens: number; temperature?: number }, command: Command) => {
      ctx.use(command);
      const payload = chatPayload(prompt, opts);
      let reply: unknown;
      try {
        reply = await ctx.runClient().invoke(opts.endpoint, payload, opts.component);
      } catch (e) {
        if (e instanceof Error && e.name === 'ValidationError' && /not found/i.test(e.message)) {
          throw new CliError(`endpoint ${opts.endpoint} not found in this region (${e.message}): check the name, --region and --profile`);
        }
        if (e instanceof Error && e.name === 'ModelError') throw new CliError(`the endpoint's model returned an error: ${e.message}`);
        throw e;
      }
      const content = (reply as { choices?: Array<{ message?: { content?: string } }> })?.choices?.[0]?.message?.content;
      ctx.print(reply, content !== undefined ? `${content}\n` : `${typeof reply === 'string' ? reply : JSON.stringify(reply)}\n`);
    });
}

/** The OpenAI chat-completions request body vLLM serves. */
export function chatPayload(prompt: string, opts: { adapter?: string; model?: string; maxTokens: number; temperature?: number }) {
  const model = opts.adapter ?? opts.model;
  return {
    ...(model ? { model } : {}),
    messages: [{ role: 'user', content: prompt }],
    max_tokens: opts.maxTokens,
    ...(opts.temperature !== undefined ? { temperature: opts.temperature } : {}),
  };
}
