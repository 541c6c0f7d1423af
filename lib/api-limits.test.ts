import {
  CUSTOMER_METADATA_VALUE,
  MODEL_PACKAGE_DESCRIPTION,
  SAGEMAKER_API_LIMITS,
  StringLimit,
  stringLimitProblem,
} from './api-limits';
import { GPU_INSTANCES } from './instances';
import { RUN_ID_MAX_LENGTH } from './run-request';
import { ApiRequest, serviceModel, validateRequests } from '../test/support/api-model';

const model = serviceModel('sagemaker');
const shapes: Record<string, any> = model.shapes;

/** The shape of a member path such as `CreateTrainingJob.InputDataConfig[].ChannelName` or `...HyperParameters{value}`. */
function shapeAt(member: string): string {
  const [operation, ...rest] = member.split('.');
  let name: string = model.operations[operation].input.shape;
  for (const part of rest.join('.').split(/\.|(?=\[\])|(?=\{)/)) {
    const shape = shapes[name];
    if (part === '[]') name = shape.member.shape;
    else if (part === '{key}') name = shape.key.shape;
    else if (part === '{value}') name = shape.value.shape;
    else if (part.endsWith('{key}') || part.endsWith('{value}')) throw new Error(`unexpected ${part}`);
    else {
      if (!shape.members?.[part]) throw new Error(`${member}: ${name} has no member ${part}`);
      name = shape.members[part].shape;
    }
  }
  return name;
}

/** A request with `value` at `member`, everything else left out (the other errors are the same for every value). */
function requestWith(member: string, value: string): { request: ApiRequest; path: string } {
  const [operation, ...rest] = member.split('.');
  const parts = rest.join('.').split(/\.|(?=\[\])|(?=\{)/);
  const build = (i: number): unknown => {
    if (i === parts.length) return value;
    const part = parts[i];
    if (part === '[]') return [build(i + 1)];
    if (part === '{key}') return { [value]: 'v' };
    if (part === '{value}') return { k: build(i + 1) };
    return { [part]: build(i + 1) };
  };
  const path = parts.map((p) => (p === '[]' ? '[0]' : p === '{value}' ? '.k' : p === '{key}' ? ' (key' : `.${p}`)).join('');
  return { request: { service: 'sagemaker', operation, params: build(0) }, path: `${operation}${path}` };
}

describe('SageMaker API limits', () => {
  test.each(SAGEMAKER_API_LIMITS.map((l) => [l.shape, l]))('%s is what the API model says', (_, limit) => {
    const { shape, members, regExp, allowedCharacter, allowed, ...stated } = limit as StringLimit;
    const inModel = shapes[shape];
    expect(inModel).toBeDefined();
    const fromModel = Object.fromEntries((['min', 'max', 'pattern'] as const).filter((k) => inModel[k] !== undefined).map((k) => [k, inModel[k]]));
    expect(stated).toEqual(fromModel);
    for (const member of members) expect([member, shapeAt(member)]).toEqual([member, shape]);
  });

  // Values on both sides of every pattern: the JavaScript check and the service model agree on each.
  const SAMPLES = [
    'a',
    'tuneyard-chats-qlora-0123456789ab-train',
    's3://data/base-models/llama-3.1-8b/',
    's3://data/base-models/Llama 3.1 (8B)/',
    's3://data/base-models/modèle 8b/',
    'https://data.s3.amazonaws.com/x',
    's3://',
    's3://b/line\nbreak',
    's3://b/sep\u2028arator',
    's3://b/next\u0085line',
    '-leading-hyphen',
    'two--hyphens',
    'method=qlora loraR=8 targetModules=q_proj+v_proj',
    '{"method":"qlora","loraR":8}',
    'truncated…',
    'tab\there',
    'arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab',
    'meta-llama/Llama-3.1-8B-Instruct',
    'x'.repeat(2501),
  ];
  const stringLimits = SAGEMAKER_API_LIMITS.filter((l): l is StringLimit => l.pattern !== undefined);

  test('every JavaScript pattern accepts what the API model accepts, and nothing else', () => {
    const cases = stringLimits.flatMap((limit) => ['baseline', ...SAMPLES].map((sample) => ({ limit, sample })));
    // a baseline value that every pattern accepts, to tell the sample's errors from the rest of the request's
    const baseline = (limit: StringLimit) => (limit.shape.startsWith('S3') ? 's3://b/k' : 'a');
    const requests = cases.map(({ limit, sample }) => requestWith(limit.members[0], sample === 'baseline' ? baseline(limit) : sample));
    const errors = validateRequests(requests.map((r) => r.request));
    const base = new Map<StringLimit, string[]>();
    cases.forEach(({ limit, sample }, i) => sample === 'baseline' && base.set(limit, errors[i]));
    const disagreements = cases.flatMap(({ limit, sample }, i) => {
      if (sample === 'baseline') return [];
      const modelAccepts = errors[i].filter((e) => !base.get(limit)!.includes(e)).length === 0;
      const weAccept = stringLimitProblem(limit, sample, limit.members[0]) === undefined;
      return modelAccepts === weAccept ? [] : [`${limit.shape} ${JSON.stringify(sample.slice(0, 60))}: model ${modelAccepts ? 'accepts' : 'refuses'}, lib/api-limits ${weAccept ? 'accepts' : 'refuses'}`];
    });
    expect(disagreements).toEqual([]);
    // the samples do tell accepted from refused values
    expect(stringLimitProblem(CUSTOMER_METADATA_VALUE, 's3://data/base-models/Llama 3.1 (8B)/', 'm')).toMatch(/refuses \("\(", "\)"\)/);
    expect(stringLimitProblem(CUSTOMER_METADATA_VALUE, 's3://data/base-models/modèle 8b/', 'm')).toBeUndefined();
  });

  test('every GPU instance type the planner knows is a training instance type of the API', () => {
    const trainingTypes: string[] = shapes.TrainingInstanceType.enum;
    expect([...GPU_INSTANCES.keys()].filter((t) => !trainingTypes.includes(t))).toEqual([]);
  });

  test('the model package description of the longest run id and lineage recipe fits', () => {
    const longest = `Tuneyard run ${'r'.repeat(RUN_ID_MAX_LENGTH)}; recipe ${'x'.repeat(CUSTOMER_METADATA_VALUE.max)}`;
    expect(stringLimitProblem(MODEL_PACKAGE_DESCRIPTION, longest, 'ModelPackageDescription')).toBeUndefined();
  });
});
