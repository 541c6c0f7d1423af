import type { DescribeModelPackageCommandOutput } from '@aws-sdk/client-sagemaker';
import { Command, Help, Option } from 'commander';
import { positiveInt, nonNegativeNumber } from '../args';
import { CliError } from '../errors';
import { applyDeployment, DeployStep, planDeployment, WAIT_INTERVAL_MS, WAIT_POLLS, waitForDeployment } from '../deploy';
import { duration, table, time } from '../format';
import { addExamples, EXIT_CODES, type CommandContext } from '../program';

export function registerModelCommands(program: Command, ctx: CommandContext): void {
  const kindOption = new Option('--kind <kind>', 'only the models of this lineage kind (reward: what RL runs name with --reward-model)').choices(MODEL_KINDS);
  const models = program
    .command('models')
    .description(
      'List the models the pipeline registered (the plane\'s SageMaker model package group), newest first, with what each is ' +
        '(KIND: reward or generative; METHOD), the run that trained it and the reward model an RL run was trained against. ' +
        'Versions registered without lineage show -.',
    )
    .addOption(kindOption)
    .action(async (opts: { kind?: ModelKind }, command: Command) => {
      ctx.use(command);
      const described = await ctx.runClient().describeModels();
      const shown = opts.kind ? described.filter((m) => modelKind(m) === opts.kind) : described;
      const empty = !described.length
        ? 'no models registered yet: a run registers one when it passes the eval gate\n'
        : `no models of kind ${opts.kind} among the ${described.length} registered${opts.kind === 'reward' ? ': a run with --method reward registers one' : ''}\n`;
      ctx.print(
        shown.map(modelJson),
        shown.length
          ? table(
              ['VERSION', 'KIND', 'METHOD', 'APPROVAL', 'CREATED', 'RUN', 'REWARD MODEL', 'DESCRIPTION'],
              shown.map((m) => {
                const lineage = m.CustomerMetadataProperties;
                return [
                  String(m.ModelPackageVersion ?? '-'),
                  modelKind(m) ?? '-',
                  lineage?.method ?? '-',
                  m.ModelApprovalStatus ?? '-',
                  time(m.CreationTime),
                  lineage?.runId ?? '-',
                  rewardModelText(lineage?.rewardModel, m.ModelPackageGroupName) ?? '-',
                  descriptionText(m),
                ];
              }),
            )
          : empty,
      );
    });

  const show = models
    .command('show')
    .description('Show one registered model\'s lineage: what it is, what it was trained from and against, its training job, eval report, approval and model data.')
    .argument('<model>', 'model version (from `tuneyard models`) or model package ARN')
    .action(async (model: string, _opts: unknown, command: Command) => {
      ctx.use(command);
      // commander takes a parent's options anywhere on the line: `models show 3 --kind reward` reaches `models`
      const kind = (command.parent?.opts() as { kind?: string } | undefined)?.kind;
      if (kind !== undefined) {
        throw new CliError(`--kind ${kind} filters the listing (tuneyard models --kind ${kind}); \`models show\` shows the one model named: remove --kind`, EXIT_CODES.usage);
      }
      const described = await ctx.runClient().describeModel(model);
      ctx.print(modelJson(described), modelText(described));
    });
  // --kind filters the listing: `models show` takes no --kind, so its help lists the other global options only
  show.configureHelp({
    ...show.configureHelp(),
    visibleGlobalOptions(this: Help, cmd: Command) {
      return Help.prototype.visibleGlobalOptions.call(this, cmd).filter((option) => option !== kindOption);
    },
  });
  addExamples(show, ['tuneyard models show 3', 'tuneyard models show arn:aws:sagemaker:us-east-1:123456789012:model-package/tuneyard-models/3 --json']);

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

/** The lineage kinds a registered model carries (CustomerMetadataProperties `kind`, written by the Register state). */
const MODEL_KINDS = ['reward', 'generative'] as const;
type ModelKind = (typeof MODEL_KINDS)[number];

/** A registered model as `--json` prints it: the package's fields and its lineage (null when registered without one). */
function modelJson(m: DescribeModelPackageCommandOutput) {
  return {
    version: m.ModelPackageVersion,
    arn: m.ModelPackageArn,
    approval: m.ModelApprovalStatus,
    approvalDescription: m.ApprovalDescription,
    status: m.ModelPackageStatus,
    created: m.CreationTime,
    description: m.ModelPackageDescription,
    modelData: modelDataUri(m),
    lineage: hasLineage(m) ? m.CustomerMetadataProperties : null,
  };
}

/**
 * A registered model's kind: its lineage's `kind`, or `generative` for lineage written before the Register state recorded
 * a kind (it came with method reward: every model registered before then generates); undefined without lineage.
 */
function modelKind(m: DescribeModelPackageCommandOutput): string | undefined {
  if (!hasLineage(m)) return undefined;
  const lineage = m.CustomerMetadataProperties;
  return lineage.kind ?? (lineage.method === 'reward' ? 'reward' : 'generative');
}

/** Whether the Register state wrote the package's lineage (older versions, and models registered by hand, have none). */
function hasLineage(m: DescribeModelPackageCommandOutput): m is DescribeModelPackageCommandOutput & { CustomerMetadataProperties: Record<string, string> } {
  return Boolean(m.CustomerMetadataProperties?.runId);
}

function modelDataUri(m: DescribeModelPackageCommandOutput): string | undefined {
  const container = m.InferenceSpecification?.Containers?.[0];
  return container?.ModelDataSource?.S3DataSource?.S3Uri ?? container?.ModelDataUrl;
}

/**
 * What an RL run was rewarded by, shortly: the version number of a model package of the same group, else the ARN or
 * s3:// folder as the lineage records it; undefined for `none` (every other run) and models without lineage.
 */
function rewardModelText(value: string | undefined, group: string | undefined): string | undefined {
  if (!value || value === 'none') return undefined;
  const sameGroup = /:model-package\/([^/]+)\/(\d+)$/.exec(value);
  return sameGroup && sameGroup[1] === group ? sameGroup[2] : value;
}

/** The Register state writes `Tuneyard run <run id>; recipe <recipe>`: the run has its own column, so the recipe is shown. */
function descriptionText(m: DescribeModelPackageCommandOutput): string {
  const description = m.ModelPackageDescription ?? '';
  const runId = m.CustomerMetadataProperties?.runId;
  const prefix = `Tuneyard run ${runId}; `;
  return runId && description.startsWith(prefix) ? description.slice(prefix.length) : description;
}

/** `tuneyard models show`: the model's lineage, one row each. */
function modelText(m: DescribeModelPackageCommandOutput): string {
  const lineage = hasLineage(m) ? m.CustomerMetadataProperties : undefined;
  const value = (key: string) => {
    const v = lineage?.[key];
    return v === undefined || v === '' || v === 'null' ? '-' : v;
  };
  const label = m.ModelPackageVersion !== undefined ? `model version ${m.ModelPackageVersion}` : 'model';
  const reward = lineage?.rewardModel;
  const rewardVersion = rewardModelText(reward, m.ModelPackageGroupName);
  const rows: Array<[string, string]> = [
    ['kind', modelKind(m) ?? '-'],
    ['method', value('method')],
    ['run', value('runId')],
    ['base model', value('baseModel')],
    ['dataset', lineage ? `${value('datasetName')}@${value('datasetSha256')}` : '-'],
    [
      'reward model',
      // lineage written before it recorded a reward model has no rewardModel: unknown (-), not none
      reward === undefined ? '-' : reward === 'none' ? 'none' : rewardVersion !== reward ? `version ${rewardVersion} (${reward})` : reward,
    ],
    ['training job', value('trainingJobName')],
    ['eval loss ratio', value('evalLossRatio')],
    ['forgetting increase', value('forgettingIncrease')],
    ['eval report', value('evalReport')],
    ['approval', m.ApprovalDescription ? `${m.ModelApprovalStatus ?? '-'} (${m.ApprovalDescription})` : (m.ModelApprovalStatus ?? '-')],
    ['model data', modelDataUri(m) ?? '-'],
    ['created', time(m.CreationTime)],
    ['description', m.ModelPackageDescription ?? '-'],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return (
    `${label}: ${m.ModelPackageArn}\n` +
    (lineage ? '' : '  registered without lineage (kind, method, run): only its package fields are known\n') +
    rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}\n`).join('')
  );
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
