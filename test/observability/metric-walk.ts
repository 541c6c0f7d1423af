/**
 * Walks the metrics that a synthesized template's dashboards and alarms read, and finds the
 * resource of the same template that publishes each one.
 *
 * SEARCH expressions are checked too: their schema, metric name and dimension terms must match
 * what a resource publishes (`searchProblem`).
 *
 * Intrinsics are resolved to stable placeholder strings (`${Ref:X}`, `${GetAtt:X.Attr}`), so the
 * dashboard body (an `Fn::Join`) parses as JSON and a dimension value can be compared with the
 * resource it names.
 */

import { USAGE_ENV, USAGE_METRICS, WatchedEndpoint } from '../../constructs/usage-metrics/usage-contract';

type Json = unknown;
type Resources = Record<string, { Type: string; Properties?: Record<string, any> }>;

/** Test values of the pseudo parameters. */
const PSEUDO: Record<string, string> = {
  'AWS::Region': 'us-east-1',
  'AWS::AccountId': '123456789012',
  'AWS::Partition': 'aws',
  'AWS::URLSuffix': 'amazonaws.com',
  'AWS::StackName': 'Tuneyard',
};

/** Replaces intrinsics with placeholder strings; `Fn::Join` joins them. */
export function resolveIntrinsics(value: Json): Json {
  if (Array.isArray(value)) return value.map(resolveIntrinsics);
  if (value && typeof value === 'object') {
    const obj = value as Record<string, Json>;
    const keys = Object.keys(obj);
    if (keys.length === 1) {
      const [key] = keys;
      const arg = obj[key];
      if (key === 'Ref') return PSEUDO[arg as string] ?? `\${Ref:${arg as string}}`;
      if (key === 'Fn::GetAtt') {
        const [id, attr] = Array.isArray(arg) ? (arg as string[]) : (arg as string).split('.');
        return `\${GetAtt:${id}.${attr}}`;
      }
      if (key === 'Fn::Join') {
        const [sep, parts] = arg as [string, Json[]];
        return (parts.map(resolveIntrinsics) as string[]).join(sep);
      }
      if (key === 'Fn::Sub' && typeof arg === 'string') {
        return arg.replace(/\$\{([^}]+)\}/g, (_, name: string) => PSEUDO[name] ?? (name.includes('.') ? `\${GetAtt:${name}}` : `\${Ref:${name}}`));
      }
      if (key.startsWith('Fn::')) throw new Error(`metric-walk: cannot resolve ${key} in ${JSON.stringify(value)}`);
    }
    return Object.fromEntries(keys.map((k) => [k, resolveIntrinsics(obj[k])]));
  }
  return value;
}

/** A metric read by a widget or an alarm. */
export interface ReadMetric {
  /** Where it is read: `dashboard X widget "title"` or `alarm X`. */
  readonly where: string;
  readonly namespace: string;
  readonly metricName: string;
  readonly dimensions: Record<string, string>;
}

/** A SEARCH expression read by a widget or an alarm. */
export interface ReadSearch {
  readonly where: string;
  readonly expression: string;
}

export interface ReadMetrics {
  readonly metrics: ReadMetric[];
  readonly searches: ReadSearch[];
  /** Math expressions that are not searches (they combine the metrics above). */
  readonly expressions: string[];
  /** Alarm ARNs shown in alarm status widgets. */
  readonly alarmArns: string[];
  /** How many metric widgets were read. */
  readonly metricWidgets: number;
}

/** Every metric, search and expression that the template's dashboards and alarms read. */
export function readMetrics(template: Record<string, any>): ReadMetrics {
  const out = { metrics: [] as ReadMetric[], searches: [] as ReadSearch[], expressions: [] as string[], alarmArns: [] as string[], metricWidgets: 0 };
  for (const [id, resource] of Object.entries(template.Resources as Resources)) {
    if (resource.Type === 'AWS::CloudWatch::Dashboard') {
      const body = JSON.parse(resolveIntrinsics(resource.Properties!.DashboardBody) as string) as { widgets: any[] };
      for (const widget of body.widgets) {
        const where = `dashboard ${id} widget "${widget.properties?.title ?? widget.type}"`;
        if (widget.type === 'alarm') out.alarmArns.push(...(widget.properties.alarms as string[]));
        if (widget.type !== 'metric') continue;
        out.metricWidgets++;
        for (const row of widget.properties.metrics as any[][]) readWidgetRow(row, where, out);
      }
    }
    if (resource.Type === 'AWS::CloudWatch::Alarm') {
      const p = resolveIntrinsics(resource.Properties) as Record<string, any>;
      const where = `alarm ${id}`;
      if (p.MetricName) {
        out.metrics.push({ where, namespace: p.Namespace, metricName: p.MetricName, dimensions: dims(p.Dimensions) });
      }
      for (const query of (p.Metrics ?? []) as any[]) {
        if (query.MetricStat) {
          const m = query.MetricStat.Metric;
          out.metrics.push({ where, namespace: m.Namespace, metricName: m.MetricName, dimensions: dims(m.Dimensions) });
        } else if (query.Expression) {
          readExpression(query.Expression, where, out);
        }
      }
    }
  }
  return out;
}

function dims(list: { Name: string; Value: string }[] | undefined): Record<string, string> {
  return Object.fromEntries((list ?? []).map((d) => [d.Name, d.Value]));
}

function readWidgetRow(row: any[], where: string, out: { metrics: ReadMetric[]; searches: ReadSearch[]; expressions: string[] }): void {
  const strings = row.filter((x) => typeof x === 'string') as string[];
  const options = row.find((x) => x && typeof x === 'object') as { expression?: string } | undefined;
  if (strings.length === 0) {
    if (!options?.expression) throw new Error(`metric-walk: ${where} has a row with neither a metric nor an expression: ${JSON.stringify(row)}`);
    readExpression(options.expression, where, out);
    return;
  }
  if (strings.includes('...') || strings.length % 2 !== 0) throw new Error(`metric-walk: ${where}: unexpected row ${JSON.stringify(row)}`);
  const [namespace, metricName, ...pairs] = strings;
  const dimensions: Record<string, string> = {};
  for (let i = 0; i < pairs.length; i += 2) dimensions[pairs[i]] = pairs[i + 1];
  out.metrics.push({ where, namespace, metricName, dimensions });
}

function readExpression(expression: string, where: string, out: { searches: ReadSearch[]; expressions: string[] }): void {
  if (/SEARCH\s*\(/.test(expression)) out.searches.push({ where, expression });
  else out.expressions.push(expression);
}

/** The metrics each AWS service publishes, by namespace, with the dimension sets it uses. */
const STATES_METRICS = ['ExecutionsStarted', 'ExecutionsSucceeded', 'ExecutionsFailed', 'ExecutionsTimedOut', 'ExecutionsAborted', 'ExecutionTime', 'ExecutionThrottled', 'ExecutionsRedriven'];
const SAGEMAKER_INVOCATION_METRICS = [
  'Invocations',
  'Invocation4XXErrors',
  'Invocation5XXErrors',
  'InvocationModelErrors',
  'InvocationsPerInstance',
  'InvocationsPerCopy',
  'ModelLatency',
  'OverheadLatency',
  'ModelSetupTime',
  'NoCapacityInvocationFailures',
  'ConcurrentRequestsPerModel',
  'ConcurrentRequestsPerCopy',
];
const ENDPOINT_INSTANCE_METRICS = ['CPUUtilization', 'MemoryUtilization', 'DiskUtilization', 'GPUUtilization', 'GPUMemoryUtilization'];
const COMPONENT_UTILIZATION_METRICS = ['CPUUtilizationNormalized', 'MemoryUtilizationNormalized', 'GPUUtilizationNormalized', 'GPUMemoryUtilizationNormalized'];
const S3_STORAGE_TYPES = ['StandardStorage', 'IntelligentTieringFAStorage', 'IntelligentTieringIAStorage', 'StandardIAStorage', 'OneZoneIAStorage', 'GlacierStorage', 'DeepArchiveStorage'];

/**
 * The logical id of the resource of `template` that publishes `metric`, or a reason why none does.
 */
export function publisherOf(metric: ReadMetric, template: Record<string, any>): { publisher?: string; problem?: string } {
  const resources = template.Resources as Resources;
  const ofType = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type);
  const keys = Object.keys(metric.dimensions).sort().join(',');
  // An inference component has no name attribute (its Ref is the ARN): the name must be set on it.
  const componentNamed = (name: string) => {
    const found = ofType('AWS::SageMaker::InferenceComponent').find(
      ([, r]) => r.Properties?.InferenceComponentName !== undefined && name === resolveIntrinsics(r.Properties.InferenceComponentName),
    );
    return found ? { publisher: found[0] } : undefined;
  };
  const fail = (problem: string) => ({ problem: `${metric.where}: ${metric.namespace} ${metric.metricName} ${JSON.stringify(metric.dimensions)}: ${problem}` });

  switch (metric.namespace) {
    case 'AWS/States': {
      if (!STATES_METRICS.includes(metric.metricName)) return fail('Step Functions publishes no such metric');
      if (keys !== 'StateMachineArn') return fail('AWS/States execution metrics have exactly the StateMachineArn dimension');
      const machine = ofType('AWS::StepFunctions::StateMachine').find(([id]) => metric.dimensions.StateMachineArn === `\${Ref:${id}}`);
      return machine ? { publisher: machine[0] } : fail('no state machine of this stack has that ARN');
    }
    case 'AWS/S3': {
      const bucket = ofType('AWS::S3::Bucket').find(
        ([id, r]) => metric.dimensions.BucketName === `\${Ref:${id}}` || metric.dimensions.BucketName === r.Properties?.BucketName,
      );
      if (keys !== 'BucketName,StorageType') return fail('S3 storage metrics have exactly the BucketName and StorageType dimensions');
      if (metric.metricName === 'BucketSizeBytes' && !S3_STORAGE_TYPES.includes(metric.dimensions.StorageType)) return fail('not a storage class of BucketSizeBytes');
      if (metric.metricName === 'NumberOfObjects' && metric.dimensions.StorageType !== 'AllStorageTypes') return fail('NumberOfObjects is published for AllStorageTypes only');
      if (!['BucketSizeBytes', 'NumberOfObjects'].includes(metric.metricName)) return fail('only the daily storage metrics are free and always on; request metrics need a metrics configuration');
      return bucket ? { publisher: bucket[0] } : fail('no bucket of this stack has that name');
    }
    case 'AWS/SageMaker':
    case '/aws/sagemaker/Endpoints': {
      const names = metric.namespace === 'AWS/SageMaker' ? SAGEMAKER_INVOCATION_METRICS : ENDPOINT_INSTANCE_METRICS;
      if (!names.includes(metric.metricName)) return fail(`SageMaker publishes no ${metric.metricName} in ${metric.namespace}`);
      if (keys === 'InferenceComponentName') {
        if (metric.namespace !== 'AWS/SageMaker') return fail('instance metrics of inference components are in /aws/sagemaker/InferenceComponents');
        return componentNamed(metric.dimensions.InferenceComponentName) ?? fail('no inference component of this stack has that name');
      }
      if (keys !== 'EndpointName,VariantName') return fail('endpoint metrics have the EndpointName and VariantName dimensions');
      for (const [id, r] of ofType('AWS::SageMaker::Endpoint')) {
        const names = [`\${GetAtt:${id}.EndpointName}`, resolveIntrinsics(r.Properties?.EndpointName)];
        if (!names.includes(metric.dimensions.EndpointName)) continue;
        const variants = endpointVariants(r.Properties?.EndpointConfigName, resources);
        return variants.includes(metric.dimensions.VariantName) ? { publisher: id } : fail(`endpoint ${id} has variants ${variants.join(', ')}`);
      }
      return fail('no endpoint of this stack has that name');
    }
    case '/aws/sagemaker/InferenceComponents': {
      if (!COMPONENT_UTILIZATION_METRICS.includes(metric.metricName)) return fail(`SageMaker publishes no ${metric.metricName} for inference components`);
      if (keys !== 'InferenceComponentName') return fail('inference component metrics have exactly the InferenceComponentName dimension');
      return componentNamed(metric.dimensions.InferenceComponentName) ?? fail('no inference component of this stack has that name');
    }
    default: {
      const usage = usagePublishers(template).find((p) => p.namespace === metric.namespace);
      if (usage) {
        const named = Object.values(USAGE_METRICS).filter((m) => m.name === metric.metricName);
        if (named.length === 0) return fail(`the usage publisher ${usage.id} publishes no such metric`);
        const published = named.find((m) => [...m.dimensions].sort().join(',') === keys);
        if (!published) return fail(`${usage.id} publishes it with dimensions ${named.map((m) => `[${m.dimensions.join(',')}]`).join(' or ')}`);
        const problem = usage.problemWith(published.name, metric.dimensions);
        return problem ? fail(problem) : { publisher: usage.id };
      }
      for (const [id, r] of ofType('AWS::Logs::MetricFilter')) {
        // A pipeline's own namespace names its state machine (an intrinsic): compare it resolved, as the metric's is.
        for (const t of resolveIntrinsics(r.Properties?.MetricTransformations ?? []) as any[]) {
          if (t.MetricNamespace !== metric.namespace || t.MetricName !== metric.metricName) continue;
          const filterKeys = ((t.Dimensions ?? []) as { Key: string }[]).map((d) => d.Key).sort().join(',');
          return filterKeys === keys ? { publisher: id } : fail(`metric filter ${id} publishes it with dimensions [${filterKeys}]`);
        }
      }
      return fail('no resource of this stack publishes this namespace and name');
    }
  }
}

function endpointVariants(configName: Json, resources: Resources): string[] {
  const ref = resolveIntrinsics(configName) as string;
  for (const [id, r] of Object.entries(resources)) {
    if (r.Type !== 'AWS::SageMaker::EndpointConfig') continue;
    // Ref of an endpoint config is its ARN, which an endpoint does not accept: only the name counts.
    const names = [`\${GetAtt:${id}.EndpointConfigName}`, resolveIntrinsics(r.Properties?.EndpointConfigName)];
    if (names.includes(ref)) return ((r.Properties?.ProductionVariants ?? []) as { VariantName: string }[]).map((v) => v.VariantName);
  }
  return [];
}

/** A Tuneyard usage publisher of the template: a scheduled function that may put one namespace. */
interface UsagePublisher {
  readonly id: string;
  readonly namespace: string;
  /** Why the publisher does not publish this metric with these dimension values, if it does not. */
  problemWith(metricName: string, dimensions: Record<string, string>): string | undefined;
}

/** The usage-metrics functions of the template that a schedule runs and whose role may put their namespace. */
function usagePublishers(template: Record<string, any>): UsagePublisher[] {
  const resources = template.Resources as Resources;
  const publishers: UsagePublisher[] = [];
  for (const [id, r] of Object.entries(resources)) {
    if (r.Type !== 'AWS::Lambda::Function') continue;
    const env = resolveIntrinsics(r.Properties?.Environment?.Variables ?? {}) as Record<string, string>;
    const namespace = env[USAGE_ENV.namespace];
    if (!namespace) continue;
    const scheduled = Object.values(resources).some(
      (rule) => rule.Type === 'AWS::Events::Rule' && rule.Properties?.ScheduleExpression && JSON.stringify(rule.Properties.Targets ?? []).includes(`"${id}"`),
    );
    const roleId = /^\$\{GetAtt:(.+)\.Arn\}$/.exec(resolveIntrinsics(r.Properties?.Role) as string)?.[1];
    const mayPut = Object.values(resources).some(
      (policy) =>
        policy.Type === 'AWS::IAM::Policy' &&
        (resolveIntrinsics(policy.Properties?.Roles ?? []) as string[]).includes(`\${Ref:${roleId}}`) &&
        (policy.Properties?.PolicyDocument?.Statement ?? []).some(
          (st: any) => st.Effect === 'Allow' && [st.Action].flat().includes('cloudwatch:PutMetricData') && st.Condition?.StringEquals?.['cloudwatch:namespace'] === namespace,
        ),
    );
    if (!scheduled || !mayPut) continue;
    const prefixes = JSON.parse(env[USAGE_ENV.trainingJobPrefixes]) as string[];
    const endpoints = JSON.parse(env[USAGE_ENV.endpoints]) as WatchedEndpoint[];
    const dataBucket = env[USAGE_ENV.dataBucket];
    publishers.push({
      id,
      namespace,
      problemWith: (metricName, dimensions) => {
        if (dimensions.TrainingJobPrefix !== undefined && !prefixes.includes(dimensions.TrainingJobPrefix)) {
          return `${id} publishes training jobs of [${prefixes.join(', ')}] only`;
        }
        if (dimensions.BucketName !== undefined && dimensions.BucketName !== dataBucket) {
          return `${id} counts the dataset versions of ${dataBucket || 'no bucket'} only`;
        }
        if (dimensions.EndpointName !== undefined) {
          const endpoint = endpoints.find((e) => e.name === dimensions.EndpointName);
          if (!endpoint) return `${id} watches endpoints [${endpoints.map((e) => e.name).join(', ')}] only`;
          if (/Copies$/.test(metricName) && !endpoint.components) return `${id} publishes no copies of ${endpoint.name}: it serves a single model`;
        }
        return undefined;
      },
    });
  }
  return publishers;
}

/** The parts of a `SEARCH('{schema} terms', 'stat', period)` expression. */
export interface ParsedSearch {
  readonly namespace: string;
  readonly dimensions: string[];
  readonly metricName?: string;
  /** Designated terms: dimension name → values, with whether each was quoted (an exact match). */
  readonly terms: Record<string, { value: string; exact: boolean }[]>;
}

export function parseSearch(expression: string): ParsedSearch {
  const match = /SEARCH\('\{([^}]*)\}\s*(.*?)',\s*'\w+',\s*\d+\)/.exec(expression);
  if (!match) throw new Error(`metric-walk: cannot parse the SEARCH in ${expression}`);
  const [namespace, ...dimensions] = match[1].split(',').map((part) => part.trim().replace(/^"(.*)"$/, '$1'));
  const terms: ParsedSearch['terms'] = {};
  for (const term of match[2].matchAll(/(\w+)=(?:"([^"]*)"|([^\s()]+))/g)) {
    (terms[term[1]] ??= []).push({ value: term[2] ?? term[3], exact: term[2] !== undefined });
  }
  const metricName = terms.MetricName?.[0]?.value;
  delete terms.MetricName;
  return { namespace, dimensions, metricName, terms };
}

/** Instance metrics SageMaker publishes for training jobs, per host. */
const TRAINING_INSTANCE_METRICS = ['CPUUtilization', 'MemoryUtilization', 'DiskUtilization', 'GPUUtilization', 'GPUMemoryUtilization'];

/** Why no resource of the template publishes what a SEARCH expression looks for, if none does. */
export function searchProblem(search: ReadSearch, template: Record<string, any>): string | undefined {
  const parsed = parseSearch(search.expression);
  const fail = (problem: string) => `${search.where}: ${search.expression}: ${problem}`;
  if (parsed.namespace === '/aws/sagemaker/TrainingJobs') {
    if (parsed.dimensions.join(',') !== 'Host') return fail('training-job metrics have exactly the Host dimension');
    const defined = metricDefinitionNames(template);
    if (!parsed.metricName || (!TRAINING_INSTANCE_METRICS.includes(parsed.metricName) && !defined.includes(parsed.metricName))) {
      return fail(`neither an instance metric nor one of the jobs' MetricDefinitions [${defined.join(', ')}]`);
    }
    const hosts = parsed.terms.Host ?? [];
    if (hosts.length === 0 || hosts.some((h) => h.exact)) return fail('Host is <job name>/algo-<n>: match the prefix by its words, unquoted');
    const prefixes = jobNamePrefixes(template);
    const words = hosts.map((h) => h.value).join('-') + '-';
    return prefixes.includes(words) ? undefined : fail(`the Host words do not spell a job-name prefix the pipeline uses [${prefixes.join(', ')}]`);
  }
  const usage = usagePublishers(template).find((p) => p.namespace === parsed.namespace);
  if (!usage) return fail('no resource of this stack publishes this namespace');
  const named = Object.values(USAGE_METRICS).filter((m) => m.name === parsed.metricName);
  if (named.length === 0) return fail(`the usage publisher ${usage.id} publishes no such metric`);
  const published = named.find((m) => m.dimensions.join(',') === parsed.dimensions.join(','));
  if (!published) return fail(`${usage.id} publishes it with dimensions ${named.map((m) => `[${m.dimensions.join(',')}]`).join(' or ')}`);
  for (const [name, values] of Object.entries(parsed.terms)) {
    for (const { value, exact } of values) {
      if (!exact) return fail(`${name}=${value} is a partial match; the usage dimensions are matched exactly`);
      const problem = usage.problemWith(published.name, { [name]: value });
      if (problem) return fail(problem);
    }
  }
  return undefined;
}

/** Names of the MetricDefinitions of every training job the template's state machines start. */
function metricDefinitionNames(template: Record<string, any>): string[] {
  const names = new Set<string>();
  const walk = (value: Json): void => {
    if (Array.isArray(value)) value.forEach(walk);
    else if (value && typeof value === 'object') {
      for (const [key, child] of Object.entries(value)) {
        if (key === 'MetricDefinitions' && Array.isArray(child)) for (const d of child as { Name: string }[]) names.add(d.Name);
        else walk(child);
      }
    }
  };
  for (const r of Object.values(template.Resources as Resources)) {
    if (r.Type === 'AWS::StepFunctions::StateMachine') walk(JSON.parse(resolveIntrinsics(r.Properties!.DefinitionString) as string));
  }
  return [...names];
}

/** The job-name prefixes the template's run planners give their jobs (`TUNEYARD_JOB_NAME_PREFIX`). */
function jobNamePrefixes(template: Record<string, any>): string[] {
  return Object.values(template.Resources as Resources)
    .filter((r) => r.Type === 'AWS::Lambda::Function')
    .map((r) => r.Properties?.Environment?.Variables?.TUNEYARD_JOB_NAME_PREFIX)
    .filter((prefix): prefix is string => typeof prefix === 'string' && prefix !== '');
}
