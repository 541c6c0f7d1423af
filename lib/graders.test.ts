import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pythonEnv } from '../test/support/api-model';
import { buildRunRequest } from './cli/commands/runs';
import { cosineGraders, GRADER_TYPES, graderProblems, GradersError, parseFormula, parseGraders, templateProblems, type GraderConfig } from './graders';
import { GRADERS_FILE_MAX_BYTES, gradersFileBody, parseRunRequest, planRun } from './run-request';

const ROOT = path.join(__dirname, '..');
const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'graders');
const SCHEMA = JSON.parse(fs.readFileSync(path.join(ROOT, 'training-images/trainer/tuneyard_trainer/graders.schema.json'), 'utf8'));

interface Fixture {
  description: string;
  graders: unknown;
  problems?: string[];
}
const fixtures = (kind: 'good' | 'bad') =>
  fs
    .readdirSync(path.join(FIXTURES, kind))
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => [f, JSON.parse(fs.readFileSync(path.join(FIXTURES, kind, f), 'utf8')) as Fixture] as const);

const output = '{{ sample.output_text }}';
const stringCheck = (fields: Record<string, unknown> = {}) => ({ type: 'string_check', name: 'exact', input: output, reference: '{{ item.reference }}', operation: 'eq', ...fields });

/** The message parseGraders throws for `graders`. */
function refusal(graders: unknown, where = 'graders.json'): string {
  try {
    parseGraders(graders, where);
  } catch (e) {
    expect(e).toBeInstanceOf(GradersError);
    return (e as Error).message;
  }
  throw new Error('the graders were accepted');
}

describe('the shared fixtures (test/fixtures/graders; tests/test_graders.py runs the same files)', () => {
  test.each(fixtures('good'))('accepts good/%s', (_file, fixture) => {
    // GIVEN graders as OpenAI documents them (or Tuneyard's own types) WHEN parsed THEN they come back unchanged
    expect(parseGraders(fixture.graders, 'graders')).toEqual(fixture.graders);
  });

  test.each(fixtures('bad'))('refuses bad/%s at exactly its paths', (_file, fixture) => {
    const problems = graderProblems(fixture.graders);
    expect([...new Set(problems.map((p) => p.path))].sort()).toEqual([...fixture.problems!].sort());
    for (const p of problems) expect(p.message.length).toBeGreaterThan(10);
  });

  test('the good fixtures hold every grader type, and OpenAI documented examples of each OpenAI type', () => {
    const types = new Set<string>();
    const collect = (g: { type: string; graders?: Record<string, { type: string }> }) => {
      types.add(g.type);
      Object.values(g.graders ?? {}).forEach(collect);
    };
    for (const [, fixture] of fixtures('good')) (fixture.graders as Array<{ type: string }>).forEach(collect);
    expect([...types].sort()).toEqual([...GRADER_TYPES].sort());
    const openai = fixtures('good').filter(([f]) => f.startsWith('openai-')).flatMap(([, fx]) => (fx.graders as Array<{ type: string }>).map((g) => g.type));
    expect(new Set(openai)).toEqual(new Set(['string_check', 'text_similarity', 'score_model', 'label_model', 'python', 'multi']));
  });
});

/** The problem paths graders.py (the evaluation job's validator) finds in each case: one Python process for all. */
function pythonProblemPaths(cases: unknown[]): string[][] {
  const script = 'import json, sys\nfrom tuneyard_trainer import graders\nprint(json.dumps([sorted({p for p, _ in graders.problems(c)}) for c in json.load(sys.stdin)]))';
  const result = spawnSync(path.join(pythonEnv(), 'bin', 'python'), ['-c', script], {
    cwd: path.join(ROOT, 'training-images', 'trainer'),
    input: JSON.stringify(cases),
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.status !== 0) throw new Error(`graders.py exited with ${result.status}: ${result.stderr}`);
  return JSON.parse(result.stdout);
}

/** Every good fixture with one change to one grader (a field removed, renamed, of the wrong type, or a broken string). */
function mutations(): unknown[] {
  const cases: unknown[] = [];
  for (const [, fixture] of fixtures('good')) {
    const graders = fixture.graders as Array<Record<string, unknown>>;
    graders.forEach((grader, i) => {
      const nested = Object.entries((grader.graders ?? {}) as Record<string, Record<string, unknown>>).map(([key, sub]) => ({ sub, put: (g: unknown) => ({ ...grader, graders: { ...(grader.graders as object), [key]: g } }) }));
      for (const { sub, put } of [{ sub: grader, put: (g: unknown) => g }, ...nested]) {
        for (const [field, value] of Object.entries(sub)) {
          const changed = (g: unknown) => graders.map((other, j) => (j === i ? put(g) : other));
          const without = Object.fromEntries(Object.entries(sub).filter(([k]) => k !== field));
          cases.push(changed(without));
          cases.push(changed({ ...without, [`${field}s`]: value }));
          cases.push(changed({ ...sub, [field]: 7 }));
          cases.push(changed({ ...sub, [field]: typeof value === 'string' ? `${value.slice(0, -1)} {{ sample.output } x` : [value] }));
          cases.push(changed({ ...sub, [field]: typeof value === 'string' ? `${value}s` : {} }));
        }
      }
    });
  }
  return cases;
}

describe('the TypeScript and the Python validator agree, on the fixtures', () => {
  test('on every one-field change of the good fixtures', () => {
    // GIVEN hundreds of near-miss grader lists WHEN both validators check them THEN they name the same paths
    const cases = mutations();
    expect(cases.length).toBeGreaterThan(300);
    const python = pythonProblemPaths(cases);
    const typescript = cases.map((c) => [...new Set(graderProblems(c).map((p) => p.path))].sort());
    const disagreements = cases.flatMap((c, k) => (JSON.stringify(python[k]) === JSON.stringify(typescript[k]) ? [] : [{ graders: c, python: python[k], typescript: typescript[k] }]));
    // The one known difference: graders.py parses a python grader's source (a syntax error is refused before any row is
    // graded); TypeScript has no Python parser and checks only that grade() is defined.
    const syntaxOnly = (d: (typeof disagreements)[number]) =>
      d.typescript.length === 0 && d.python.length === 1 && d.python[0].endsWith('.source') && /\{\{ sample\.output \} x/.test(JSON.stringify(d.graders));
    expect(disagreements.filter((d) => !syntaxOnly(d))).toEqual([]);
    expect(disagreements.length).toBe(2); // the two python sources given a broken tail (openai-python, tuneyard-types)
    // and the changes are mistakes: most are refused
    expect(typescript.filter((paths) => paths.length > 0).length).toBeGreaterThan(cases.length * 0.7);
  });
});

const EDGE_FORMULAS = ['a+b', '1_000*a', '0x10*a', '01*a', '00*a', '1.e3*a', 'a//b', 'min(a,)', 'min(,)', 'a**-b', 'a^b^c', 'abs(-a)', '(a)(b)', 'a b', 'True', 'None*a',
  'a if b else 1', 'lambda: 1', 'a[0]', "'s'", 'a.b', '+-a', '--a', '2e', '1e3*a', '.5*a', '5.*a', '1.5.5', '1j*a', ' a ', '', 'a,b', '(a,b)', 'min(a, b=1)',
  'min(*a)', 'a @ b', 'a < b', 'not a', 'a\n+ b', 'a \\\n+ b'];
const EDGE_TEMPLATES = ['{{item.a}}', '{{ item }}', '{{item.}}', '{{ item.a.b[0] }}', '{{sample.output_json}}', '{{ sample.output_json[0] }}', '{{ Sample.output_text }}', '{{}}',
  '{{ item.a }}}', '}}{{', '{{ item.a-b }}', '{{ item.ä }}', '{ {item.a} }', '{{ item.a }} {{', '{{{ item.a }}', '{{ item..a }}', '{{ item[0] }}', '{{\titem.a\n}}',
  '{{ sample.output_text[0] }}', '{{ sample }}', '{{ sample.output_json.a.b }}'];
const EDGE_PATTERNS = ['a(', '(?P<n>a)(?P=n)', '(?<n>a)', 'a{2,1}', '\\', '[z-a]', '(?i)a', 'a(?i)b', '(?i:a)b', 'a**', '\\p{L}', '[[:alpha:]]', '\\Z', '(?P<1>a)',
  '(?x) a b', '[a-', '(?#c)a', '\\1(a)', '(a)\\1', '(a\\1)', '(?:a)\\1', '(a)\\10', '[]a](b)\\1', '\\k<n>', '(?P<n>a)|(?P<n>b)', '*a', '+', 'a{1', '(?<=ab)c',
  '(?<=a+)b'];

describe('the TypeScript and the Python validator agree', () => {
  test('on formulas, templates and regular expressions at the edges of their syntax', () => {
    const output = '{{ sample.output_text }}';
    const sub = (name: string) => stringCheck({ name });
    const cases = [
      ...EDGE_FORMULAS.map((f) => [{ type: 'multi', name: 'm', graders: { a: sub('a'), b: sub('b'), c: sub('c') }, calculate_output: f }]),
      ...EDGE_TEMPLATES.map((t) => [stringCheck({ input: t })]),
      ...EDGE_PATTERNS.flatMap((p) => [[{ type: 'regex', name: 'r', input: output, pattern: p }], [{ type: 'regex', name: 'r', input: output, pattern: p, flags: 'ims' }]]),
    ];
    const python = pythonProblemPaths(cases);
    const differ = cases.flatMap((c, k) => {
      const typescript = [...new Set(graderProblems(c).map((p) => p.path))].sort();
      return JSON.stringify(typescript) === JSON.stringify(python[k]) ? [] : [JSON.stringify(c)];
    });
    // The known difference: Python's re refuses a look-behind of varying width; JavaScript accepts it (the job refuses it at load).
    expect(differ.every((c) => c.includes('(?<=a+)b'))).toBe(true);
    expect(differ).toHaveLength(2);
    expect(python.filter((paths) => paths.length > 0).length).toBeGreaterThan(cases.length / 3);
  });

  test("the README's graders example is valid", () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const example = /## Graders\n[\s\S]*?```json\n([\s\S]*?)```/.exec(readme)![1];
    expect(parseGraders(JSON.parse(example), 'README.md').map((g) => g.type)).toEqual(['string_check', 'text_similarity', 'multi', 'python']);
  });

  test('is shipped in the npm package beside the trainer, where the compiled validator imports it from', () => {
    const files: string[] = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).files;
    expect(files).toContain('dist/training-images/trainer/tuneyard_trainer/graders.schema.json');
  });

  test("uses OpenAI's operations and metrics, meteor included (WordNet is in the trainer image)", () => {
    expect(SCHEMA.$defs.string_check.properties.operation.enum).toEqual(['eq', 'ne', 'like', 'ilike']);
    expect(SCHEMA.$defs.text_similarity.properties.evaluation_metric.enum).toEqual(
      expect.arrayContaining(['fuzzy_match', 'bleu', 'gleu', 'meteor', 'rouge_1', 'rouge_2', 'rouge_3', 'rouge_4', 'rouge_5', 'rouge_l', 'cosine']),
    );
    expect(SCHEMA['x-tuneyard'].refusedMetrics).toEqual({});
    expect(graderProblems([{ type: 'text_similarity', name: 'm', input: output, reference: '{{ item.reference }}', evaluation_metric: 'meteor' }])).toEqual([]);
  });
});

describe('each mistake is named with its path and fix', () => {
  test('fails when a type is misspelt: did you mean', () => {
    expect(refusal([{ type: 'text_similarty', name: 'x' }])).toMatch(/graders\.json\[0\]\.type: must be a grader type: .* \(got "text_similarty"\); did you mean "text_similarity"\?/);
  });

  test('fails when a field is misspelt: the unknown field gets a did you mean, the missing one what it must be', () => {
    const message = refusal([{ type: 'string_check', name: 'x', input: output, reference: 'y', operaton: 'eq' }]);
    expect(message).toMatch(/graders\.json\[0\]\.operaton: unknown field; did you mean "operation"\?/);
    expect(message).toMatch(/graders\.json\[0\]\.operation: missing; must be eq \(equal\), ne \(not equal\), like \(input contains reference\) or ilike/);
  });

  test('fails when an enum value is not one of its values: did you mean', () => {
    expect(refusal([stringCheck({ operation: 'ilke' })])).toMatch(/\[0\]\.operation: must be eq .* \(got "ilke"\); did you mean "ilike"\?/);
    expect(refusal([{ type: 'text_similarity', name: 'r', input: output, reference: 'x', evaluation_metric: 'rouge_L' }])).toMatch(/did you mean "rouge_l"\?/);
  });

  test('fails when a value has the wrong type or range, echoing the value', () => {
    expect(refusal([{ type: 'text_similarity', name: 'f', input: output, reference: 'x', evaluation_metric: 'bleu', pass_threshold: 80 }])).toMatch(
      /\[0\]\.pass_threshold: must be a number from 0 to 1: a row passes when its score is at least this \(got 80\)/,
    );
    expect(refusal([stringCheck({ input: ['a'] })])).toMatch(/\[0\]\.input: must be a string; it may hold templates: .* \(got \["a"\]\)/);
    expect(refusal(stringCheck())).toMatch(/^invalid graders \(1 problem\):\n {2}- graders\.json: must be a list of graders, e\.g\. \[\{"type": "string_check"/);
  });

  test('fails when a template is not one the resolver knows, naming the forms it knows', () => {
    expect(refusal([stringCheck({ reference: 'Answer: {{ answer }}' })])).toMatch(
      /\[0\]\.reference: "\{\{ answer \}\}" is not a template this resolver knows; use \{\{ sample\.output_text \}\}, \{\{ sample\.output_json\.<field> \}\} or \{\{ item\.<field> \}\}/,
    );
    expect(refusal([stringCheck({ input: '{{ sample.output_txt }}' })])).toMatch(/\[0\]\.input: "sample\.output_txt" is not a field of the sample; did you mean "sample\.output_text"\?/);
    expect(templateProblems('{{ item.reference }} and {{ item.meta.tags[0] }} and {{sample.output_json.name}}')).toEqual([]);
    expect(templateProblems('{{ item.reference ')).toEqual(['has a "{{" without its "}}"; close the template or remove the braces']);
    expect(templateProblems('{{ sample.choices }}')[0]).toMatch(/not a field of the sample; the sample has sample\.output_text, sample\.output_json/);
  });

  test("fails when a judge's messages hold an unknown template: the path names the message", () => {
    const judge = { type: 'score_model', name: 's', model: 'judge', input: [{ role: 'system', content: 'Grade.' }, { role: 'user', content: '{{ item.question }} {{ sampel.output_text }}' }] };
    expect(refusal([judge])).toMatch(/graders\.json\[0\]\.input\[1\]\.content: "\{\{ sampel\.output_text \}\}" is not a template/);
  });

  test('fails when two graders share a name', () => {
    expect(refusal([stringCheck(), stringCheck({ operation: 'ne' })])).toMatch(/\[1\]\.name: "exact" is also the name of \[0\]; give each grader its own name/);
  });

  test('fails when a python grader defines no grade function', () => {
    expect(refusal([{ type: 'python', name: 'p', source: 'def score(sample, item):\n    return 1\n' }])).toMatch(/\[0\]\.source: defines no top-level function grade\(sample, item\) -> float; add one/);
  });

  test('fails when a regex does not compile; Python named groups are accepted', () => {
    expect(refusal([{ type: 'regex', name: 'r', input: output, pattern: '(?P<id>[a-z' }])).toMatch(/\[0\]\.pattern: is not a valid regular expression: .*; fix the pattern/);
    expect(parseGraders([{ type: 'regex', name: 'r', input: output, pattern: '(?P<id>[a-z]+)-(?P=id)', flags: 'is' }], 'g')).toHaveLength(1);
  });
});

describe('multi formulas', () => {
  test('accepts arithmetic over the graders, ^ and ** for power, and the whitelisted functions', () => {
    for (const formula of ['0.5 * a + 0.5 * b', '(a + b) / 2', 'a ^ 2 - b ** 0.5', '-a + +b', 'max(0, min(1, a - b))', 'sqrt(abs(a)) + log(exp(b)) + floor(a) + ceil(1.5e0) + .5']) {
      expect(() => parseFormula(formula, ['a', 'b'])).not.toThrow();
    }
  });

  test.each([
    ['a + c', /uses "c", which is not one of its graders; .*the graders are a, b/],
    ['aa + b', /uses "aa", which is not one of its graders; did you mean "a"\? the graders are a, b/],
    ['pow(a, 2)', /calls "pow", which is not a formula function; .*the functions are min, max, abs, floor, ceil, exp, sqrt, log/],
    ['maxx(a, b)', /calls "maxx", which is not a formula function; did you mean "max"\? the functions are min, max/],
    ["__import__('os').system('id')", /calls "__import__", which is not a formula function/],
    ['a.real', /is not a formula \(unexpected "\."\)/],
    ['a % 2', /is not a formula \(unexpected "%"\)/],
    ['(a + b', /is not a formula \(unexpected end\)/],
    ['min()', /calls min\(\) with no arguments/],
    ['a b', /is not a formula \(unexpected "b"\)/],
  ])('fails on %s', (formula, message) => {
    expect(() => parseFormula(formula, ['a', 'b'])).toThrow(message);
  });
});

describe('in a RunRequest', () => {
  const SETTINGS = {
    bucketName: 'tuneyard-data',
    volumeKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/volume',
    outputKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/output',
    allowHubModels: false,
  };
  const request = (graders?: unknown) =>
    parseRunRequest({
      dataset: { name: 'support-chats', sha256: 'a'.repeat(64) },
      baseModel: 's3://tuneyard-data/base-models/llama-3.1-8b/',
      recipe: { method: 'qlora', batchSize: 2 },
      ...(graders === undefined ? {} : { graders }),
    });

  test('the evaluation job gets the graders as compact JSON in graders.json, its graders channel; runs without graders get none', () => {
    // GIVEN OpenAI's multigrader example WHEN the run is planned THEN graders.json holds it, the channel reads it
    const [, multi] = fixtures('good').find(([f]) => f === 'openai-multi.json')!;
    const plan = planRun(request(multi.graders), SETTINGS);
    const body = gradersFileBody(request(multi.graders))!;
    expect(JSON.parse(body)).toEqual(multi.graders);
    expect(body).not.toMatch(/\n/);
    expect(plan.gradersFile).toEqual({ bucket: 'tuneyard-data', key: `eval-reports/${plan.runId}/graders.json`, s3Uri: `s3://tuneyard-data/eval-reports/${plan.runId}/graders.json` });
    expect(plan.evaluationInputDataConfig.filter((c) => c.ChannelName === 'graders')).toEqual([
      { ChannelName: 'graders', DataSource: { S3DataSource: { S3DataType: 'S3Prefix', S3Uri: plan.gradersFile!.s3Uri, S3DataDistributionType: 'FullyReplicated' } }, ContentType: 'application/json', InputMode: 'File' },
    ]);
    expect(plan.evaluationHyperParameters).not.toHaveProperty('graders');
    const plain = planRun(request(), SETTINGS);
    expect([plain.gradersFile, plain.evaluationInputDataConfig.map((c) => c.ChannelName)]).toEqual([null, ['model', 'adapter', 'eval']]);
    expect(gradersFileBody(request())).toBeUndefined();
    // graders are part of the request: other graders, another run
    expect(planRun(request(multi.graders), SETTINGS).runId).not.toEqual(planRun(request(), SETTINGS).runId);
  });

  test("cosine graders read the run's embeddingModel, planned as the evaluation job's embedding_model channel", () => {
    // GIVEN the shared cosine fixture (no embedding_model, and one inside the model folder) and a staged encoder
    const [, cosine] = fixtures('good').find(([f]) => f === 'cosine.json')!;
    const encoder = 's3://tuneyard-data/base-models/minilm';
    const base = { dataset: { name: 'support-chats', sha256: 'a'.repeat(64) }, baseModel: 's3://tuneyard-data/base-models/llama-3.1-8b/', recipe: { method: 'qlora', batchSize: 2 } };
    // WHEN the run is planned THEN the evaluation job (only) gets the folder as its embedding_model channel
    const plan = planRun(parseRunRequest({ ...base, graders: cosine.graders, embeddingModel: encoder }), SETTINGS);
    expect(plan.evaluationInputDataConfig.filter((c) => c.ChannelName === 'embedding_model')).toEqual([
      { ChannelName: 'embedding_model', DataSource: { S3DataSource: { S3DataType: 'S3Prefix', S3Uri: `${encoder}/`, S3DataDistributionType: 'FullyReplicated' } }, InputMode: 'File' },
    ]);
    expect(plan.inputDataConfig.map((c) => c.ChannelName)).not.toContain('embedding_model');
    expect(cosineGraders(cosine.graders as GraderConfig[])).toEqual([
      { path: '[0]', name: 'cosine' },
      { path: '[1]', name: 'cosine, nested encoder' },
    ]);
    // a cosine grader inside a multi grader counts; one with an absolute folder of the job needs no channel
    const multi = { type: 'multi', name: 'm', calculate_output: 'sim', graders: { sim: { type: 'text_similarity', name: 'sim', input: output, reference: '{{ item.reference }}', evaluation_metric: 'cosine' } } };
    expect(cosineGraders([multi as GraderConfig])).toEqual([{ path: '[0].graders.sim', name: 'sim' }]);
    expect(cosineGraders([{ ...multi.graders.sim, embedding_model: '/opt/ml/input/data/encoder' } as GraderConfig])).toEqual([]);

    // WHEN a cosine grader has no staged model THEN the request names the field to set and the grader that needs it
    expect(() => parseRunRequest({ ...base, graders: [multi] })).toThrow(
      /embeddingModel: missing; graders\[0\]\.graders\.sim \("sim"\) uses the cosine metric, which embeds answers with an encoder model the evaluation job reads from its embedding_model channel: set embeddingModel to the s3:\/\/ folder of a Hugging Face encoder staged under base-models\//,
    );
    // an embeddingModel no grader reads, one not under s3://, one outside base-models/: each refused naming the fix
    expect(() => parseRunRequest({ ...base, embeddingModel: encoder })).toThrow(/embeddingModel: is read by cosine graders only, and the run has none; remove it/);
    expect(() => parseRunRequest({ ...base, graders: [stringCheck()], embeddingModel: encoder })).toThrow(/embeddingModel: is read by cosine graders only/);
    expect(() => parseRunRequest({ ...base, graders: cosine.graders, embeddingModel: 'sentence-transformers/all-MiniLM-L6-v2' })).toThrow(/embeddingModel: must be the s3:\/\/ folder of a Hugging Face encoder model staged under base-models\//);
    expect(() => planRun(parseRunRequest({ ...base, graders: cosine.graders, embeddingModel: 's3://other-bucket/models/minilm/' }), SETTINGS)).toThrow(
      /embeddingModel: "s3:\/\/other-bucket\/models\/minilm\/" is outside the plane's base-models\/ prefix; the evaluation job may only read s3:\/\/tuneyard-data\/base-models\/\. Copy the encoder model folder there/,
    );
  });

  test('fails when a grader is invalid: each problem under graders, its path, the value once and the fix', () => {
    const message = (() => {
      try {
        request([stringCheck({ operation: 'equals' }), { type: 'regex', input: output, pattern: 'a' }]);
      } catch (e) {
        return (e as Error).message;
      }
      throw new Error('accepted');
    })();
    expect(message).toMatch(/invalid RunRequest:\n {2}- graders\.0\.operation: must be eq \(equal\), .* \(got "equals"\)\n/);
    expect(message).toMatch(/\n {2}- graders\.1\.name: missing; must be the grader's name, 1-100 characters/);
    expect(message.match(/got "equals"/g)).toHaveLength(1);
    expect(() => request({ type: 'string_check' })).toThrow(/- graders: must be a list of graders/);
  });

  test('graders over the 2,500 characters of a hyperparameter plan (they go as a file); over 64 KiB they fail, naming the bound', () => {
    const source = (length: number) => `def grade(sample, item):\n    return 1.0  # ${'x'.repeat(length)}\n`;
    const plan = planRun(request([{ type: 'python', name: 'long', source: source(2600) }]), SETTINGS);
    expect(plan.gradersFile).not.toBeNull();
    expect(Object.values(plan.evaluationHyperParameters).every((v) => v.length <= 2500)).toBe(true);
    expect(() => planRun(request([{ type: 'python', name: 'long', source: source(GRADERS_FILE_MAX_BYTES) }]), SETTINGS)).toThrow(
      /graders: \d+ bytes of JSON, over the 65536 a run's graders may take \(they travel in the pipeline's state, at most 256 KiB\)\. Use fewer or shorter graders/,
    );
  });
});

describe('tuneyard train --graders FILE', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'graders-'));
  const train = (graders: string) =>
    buildRunRequest({ dataset: 'support-chats', baseModel: 's3://tuneyard-data/base-models/llama-3.1-8b/', method: 'qlora', batchSize: 2, spot: true, interval: 15, graders } as never, {
      name: 'support-chats',
      sha256: 'a'.repeat(64),
    });

  test("puts the file's graders in the request", () => {
    const file = path.join(FIXTURES, 'good', 'openai-text-similarity.json');
    const graders = JSON.parse(fs.readFileSync(file, 'utf8')).graders;
    fs.writeFileSync(path.join(dir, 'graders.json'), JSON.stringify(graders));
    expect(train(path.join(dir, 'graders.json')).graders).toEqual(graders);
  });

  test('fails naming the file, the JSON path and the fix', () => {
    const file = path.join(dir, 'bad.json');
    fs.writeFileSync(file, JSON.stringify([stringCheck({ operation: 'equal' })]));
    expect(() => train(file)).toThrow(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: invalid graders \\(1 problem\\):\\n {2}- .*bad\\.json\\[0\\]\\.operation: must be eq .*; did you mean "eq"\\?`));
    fs.writeFileSync(file, '[{');
    expect(() => train(file)).toThrow(/bad\.json: not valid JSON/);
    expect(() => train(path.join(dir, 'missing.json'))).toThrow(/missing\.json: cannot read the graders \(ENOENT\)/);
  });
});
