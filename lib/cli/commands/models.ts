import { Command } from 'commander';
import { positiveInt, nonNegativeNumber } from '../args';
import { CliError } from '../errors';
import { applyDeployment, DeployStep, planDeployment, WAIT_INTERVAL_MS, WAIT_POLLS, waitForDeployment } from '../deploy';
import { duration, table, time } from '../format';
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
      'Deploy a registered model to a vLLM endpoint, with the same calls as the pipeline\'s Deploy stage: ' +
        'an adapter component (inference-component endpoints, --adapter) or an update to the merged model with the endpoint\'s own deployment config (single-model endpoints).',
    )
    .argument('<model>', 'model version (from `tuneyard models`) or model package ARN')
    .requiredOption('--endpoint <name>', 'the SageMaker endpoint to deploy to')
    .option('--adapter <name>', 'the adapter component to create or update (inference-component endpoints)')
    .option('--approve', 'approve the model package first when it is PendingManualApproval', false)
    .option('--wait', `wait until the deployment is InService, failed or rolled back (at most ${duration(WAIT_POLLS * WAIT_INTERVAL_MS)})`, false)
    .action(async (model: string, opts: { endpoint: string; adapter?: string; approve: boolean; wait: boolean }, command: Command) => {
      ctx.use(command);
      const client = ctx.runClient();
      const sagemaker = ctx.clients().sagemaker;
      const described = await client.describeModel(model);
      const arn = described.ModelPackageArn!;
      const version = described.ModelPackageVersion;
      const label = version !== undefined ? `model version ${version}` : `model ${arn}`;
      const approval = described.ModelApprovalStatus;
      if (approval === 'Rejected') {
        throw new CliError(`${label} was rejected (${described.ApprovalDescription ?? 'no reason given'}): not deploying it; pick another with \`tuneyard models\``);
      }
      if (described.CustomerMetadataProperties?.kind === 'reward') {
        throw new CliError(`${label} is a reward model (kind=reward): it scores text and generates none, so a vLLM endpoint does not serve it; RL runs name it as their reward model (tuneyard train --method rloo --reward-model ${version ?? arn})`);
      }
      if (approval !== 'Approved' && !opts.approve) {
        throw new CliError(`${label} is ${approval}, not Approved: approve it with --approve or in the registry`);
      }
      const container = described.InferenceSpecification?.Containers?.[0];
      const modelData = container?.ModelDataSource?.S3DataSource?.S3Uri ?? container?.ModelDataUrl ?? '(none)';
      const plan = await planDeployment(sagemaker, { endpointName: opts.endpoint, adapterName: opts.adapter, modelPackageArn: arn, modelData });
      const approvedNow = approval !== 'Approved';
      if (approvedNow) await client.approveModel(arn, `approved with \`tuneyard deploy --approve\` for ${opts.endpoint}`);
      await applyDeployment(sagemaker, plan);

      const summary = {
        model: { arn, version, approvedNow },
        endpoint: plan.endpointName,
        form: plan.form,
        ...('component' in plan.waitFor ? { adapter: plan.waitFor.component } : { endpointConfig: plan.waitFor.endpointConfigName }),
        artifact: plan.artifact,
        sent: plan.steps,
        notes: plan.notes,
      };
      const text =
        (approvedNow ? `approved ${label}\n` : '') +
        `deploying ${label} to ${plan.endpointName} (${plan.form}): ${plan.artifact}\n` +
        plan.steps.map((s) => `  ${s.action} ${stepTarget(s)}\n`).join('') +
        plan.notes.map((n) => `  ${n}\n`).join('');
      if (!opts.wait) {
        const again = `tuneyard deploy ${model} --endpoint ${opts.endpoint}${opts.adapter ? ` --adapter ${opts.adapter}` : ''} --wait`;
        ctx.print(summary, text + `follow it: ${again}\n`);
        return;
      }
      if (!ctx.global.json) ctx.io.out(text);
      const what = 'component' in plan.waitFor ? `adapter ${plan.waitFor.component}` : `endpoint ${plan.endpointName}`;
      const outcome = await waitForDeployment(sagemaker, plan, {
        sleep: ctx.deps.sleep,
        onStatus: (status) => {
          if (!ctx.global.json) ctx.io.out(`[${status}] ${what}\n`);
        },
      });
      if (outcome.outcome !== 'deployed') {
        if (ctx.global.json) ctx.io.out(JSON.stringify({ ...summary, ...outcome }, null, 2) + '\n');
        throw new CliError(outcome.message);
      }
      ctx.print({ ...summary, ...outcome }, `deployed: ${outcome.message}\n`);
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

/** The resource a deploy step writes, for the text output. */
function stepTarget(step: DeployStep): string {
  switch (step.action) {
    case 'CreateModel':
      return step.input.ModelName!;
    case 'CreateEndpointConfig':
      return step.input.EndpointConfigName!;
    case 'UpdateEndpoint':
      return `${step.input.EndpointName} -> ${step.input.EndpointConfigName}${step.input.DeploymentConfig ? ' (its deployment config: ' + deploymentKind(step.input) + ')' : ''}`;
    case 'CreateInferenceComponent':
    case 'UpdateInferenceComponent':
      return `${step.input.InferenceComponentName} on ${step.input.Specification?.BaseInferenceComponentName}`;
  }
}

function deploymentKind(input: { DeploymentConfig?: { BlueGreenUpdatePolicy?: { TrafficRoutingConfiguration?: { Type?: string } }; RollingUpdatePolicy?: unknown; AutoRollbackConfiguration?: { Alarms?: { AlarmName?: string }[] } } }): string {
  const config = input.DeploymentConfig!;
  const kind = config.RollingUpdatePolicy ? 'rolling' : `blue/green ${config.BlueGreenUpdatePolicy?.TrafficRoutingConfiguration?.Type ?? ''}`.trim();
  const alarms = (config.AutoRollbackConfiguration?.Alarms ?? []).map((a) => a.AlarmName).filter(Boolean);
  return alarms.length ? `${kind}, rollback on ${alarms.join(', ')}` : `${kind}, no rollback alarms`;
}
