import { createHash } from 'node:crypto';
import {
  GetObjectCommand,
  type GetObjectCommandOutput,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
} from '@aws-sdk/client-s3';
import { isOnlineRl } from './methods';
import { echoValue, PlanLookups, RunPlan, RunRequest } from './run-request';
import { compareVocabularies, parseTokenizerVocabulary, TokenizerFileError, TokenizerVocabulary } from './tokenizer-vocabulary';

/** What PlanRun reads model folders with: an S3 client (ListObjectsV2 of a folder's own files, GetObject of a tokenizer.json). */
export interface ModelFileReader {
  send(command: ListObjectsV2Command): Promise<ListObjectsV2CommandOutput>;
  send(command: GetObjectCommand): Promise<GetObjectCommandOutput>;
}

/** The file whose vocabulary is compared: the fast tokenizer's (what a method=reward run saves beside its model). */
export const TOKENIZER_FILE = 'tokenizer.json';
/** The object metadata key `tuneyard stage-model` writes with a staged file's sha256 (lib/cli/commands/stage-model.ts). */
const SHA256_METADATA = 'sha256';
/**
 * The largest tokenizer.json read. Real ones are 2-35 MB (Gemma 3's is 33 MB); two 30 MB files of 262k tokens parse in
 * about 2 s with a peak of ~390 MB (PlanRun has 1,024 MB). A larger one is left to the training job's check.
 */
export const TOKENIZER_MAX_BYTES = 64 * 1024 * 1024;

/**
 * Why the run's reward model cannot reward its policy, or undefined: the reward model's vocabulary (tokenizer.json read
 * as get_vocab() reads it) must hold the policy's base model's, every token under the same id, or it scores token ids
 * it reads differently. The training job checks the same before weights load (grpo.py check_reward_model: the two
 * get_vocab() maps equal); this refuses the run before it starts a job.
 *
 * It refuses only what the job certainly refuses. The job's policy tokenizer is the base model's tokenizer.json plus
 * what loading adds (a named chat template's special tokens for recipe.chatTemplate, tokens only tokenizer_config.json
 * declares), and a reward run saved its tokenizer after the same additions: so a reward vocabulary that holds every
 * (token, id) pair of the base's and adds tokens under new ids is left to the job. Nothing is refused, and the job
 * checks it, when a side has no tokenizer.json (a sentencepiece-only model, a model.tar.gz artifact), when the base
 * model is a Hub id (the job downloads it), or when a file is larger than TOKENIZER_MAX_BYTES or not readable as a
 * tokenizer.json. A registered reward model whose lineage baseModel is the run's base model is not read at all.
 */
export async function rewardVocabularyProblem(
  { request, plan }: { request: RunRequest; plan: RunPlan },
  lookups: PlanLookups,
  s3: ModelFileReader,
): Promise<string | undefined> {
  const rewardModel = plan.inputDataConfig.find((c) => c.ChannelName === 'reward_model')?.DataSource.S3DataSource.S3Uri;
  if (request.rewardModel === undefined || rewardModel === undefined || !request.baseModel.startsWith('s3://')) return undefined;
  const base = folderOf(request.baseModel);
  const lineage = lookups.rewardModel?.baseModel;
  if (lineage !== undefined && lineage.startsWith('s3://') && folderOf(lineage) === base) return undefined;

  const rewardFolder = await rewardModelFolder(s3, folderOf(rewardModel));
  const rewardFile = rewardFolder?.get(TOKENIZER_FILE);
  const baseFile = rewardFile && (await folderFiles(s3, base)).get(TOKENIZER_FILE);
  if (!rewardFile || !baseFile) return undefined;
  if ([rewardFile, baseFile].some((f) => f.bytes > TOKENIZER_MAX_BYTES)) {
    console.warn(`tokenizer.json over ${TOKENIZER_MAX_BYTES} bytes (${rewardFile.uri}: ${rewardFile.bytes}, ${baseFile.uri}: ${baseFile.bytes}): the training job checks the vocabularies`);
    return undefined;
  }
  const rewardBytes = await readObject(s3, rewardFile.uri);
  if (rewardBytes === undefined) return undefined;
  const rewardSha256 = createHash('sha256').update(rewardBytes).digest('hex');
  const baseBytes = await readObject(s3, baseFile.uri, rewardSha256);
  if (baseBytes === undefined) return undefined; // the same bytes as the reward model's (stage-model's sha256), or gone
  let policy: TokenizerVocabulary;
  let reward: TokenizerVocabulary;
  try {
    // one at a time: only the map of the first is kept while the second file is parsed
    policy = parseTokenizerVocabulary(baseBytes, baseFile.uri);
    reward = parseTokenizerVocabulary(rewardBytes, rewardFile.uri);
  } catch (e) {
    if (!(e instanceof TokenizerFileError)) throw e;
    console.warn(`${e.message}: the training job checks the vocabularies`);
    return undefined;
  }
  const diff = compareVocabularies(policy, reward);
  if (diff.missingFromSecond === 0) return undefined;
  const clip = (token: string) => JSON.stringify(token.length > 40 ? `${token.slice(0, 40)}...` : token);
  const examples = diff.examples
    .slice(0, 2)
    .map((e) => `${clip(e.token)} is ${e.first} in the base model and ${e.second === undefined ? 'absent from the reward model' : `${e.second} in the reward model`}`)
    .join('; ');
  return (
    `rewardModel: the reward model's vocabulary (${reward.tokens.size} tokens, ${echoValue(rewardFile.uri)}) is not the policy's base model's ` +
    `(${echoValue(request.baseModel)}: ${policy.tokens.size} tokens; ${diff.differing} token ids differ, e.g. ${examples}): it would score token ids it reads differently. ` +
    `Use a reward model trained (method=reward) on this base model or one of its tokenizer family${lineage !== undefined ? ` (this one was trained on ${echoValue(lineage)})` : ''}.`
  );
}

/** The files a tokenizer's chat template is read from (transformers 5 AutoTokenizer.from_pretrained of a folder). */
export const CHAT_TEMPLATE_FILES = { config: 'tokenizer_config.json', jinja: 'chat_template.jinja', folder: 'additional_chat_templates/' } as const;
/** The largest tokenizer_config.json read (real ones are a few kB to ~200 kB, a long template inline); a larger one is left to the job. */
export const TOKENIZER_CONFIG_MAX_BYTES = 4 * 1024 * 1024;

/**
 * Why a grpo or rloo run cannot start, or undefined: its base model's tokenizer has no chat template and the recipe sets
 * no chatTemplate. The training job refuses it before weights load (grpo.py policy_tokenizer), after the job has started;
 * this refuses the run before it starts one.
 *
 * The template is found as transformers 5 finds it (tokenization_utils_base.py from_pretrained): chat_template.jinja in
 * the folder, or *.jinja files in its additional_chat_templates/ folder, take priority over the `chat_template` of
 * tokenizer_config.json (a string, or a list of {name, template}). chat_template.json is a processor's file, which
 * AutoTokenizer does not read. It refuses only what the job certainly refuses: when the folder holds
 * chat_template.jinja or additional_chat_templates/ (whatever they hold), has no tokenizer_config.json, or that file is
 * larger than TOKENIZER_CONFIG_MAX_BYTES or not a JSON object, nothing is refused (the job checks); nor is a Hub base
 * model read (the job downloads it).
 */
export async function chatTemplateProblem({ request }: { request: RunRequest }, s3: ModelFileReader): Promise<string | undefined> {
  const method = request.recipe.method;
  if (!isOnlineRl(method) || request.recipe.chatTemplate !== undefined || !request.baseModel.startsWith('s3://')) return undefined;
  const base = folderOf(request.baseModel);
  const { files, folders } = await folderListing(s3, base);
  if (files.has(CHAT_TEMPLATE_FILES.jinja) || folders.has(CHAT_TEMPLATE_FILES.folder)) return undefined;
  const config = files.get(CHAT_TEMPLATE_FILES.config);
  if (!config) return undefined;
  if (config.bytes > TOKENIZER_CONFIG_MAX_BYTES) {
    console.warn(`${config.uri} is over ${TOKENIZER_CONFIG_MAX_BYTES} bytes (${config.bytes}): the training job checks the chat template`);
    return undefined;
  }
  const bytes = await readObject(s3, config.uri);
  if (bytes === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    console.warn(`${config.uri} is not valid JSON (${(e as Error).message}): the training job checks the chat template`);
    return undefined;
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return undefined;
  const template = (parsed as { chat_template?: unknown }).chat_template;
  // the tokenizer's chat_template: the string, or a dict of the list's {name, template}; the job refuses a falsy one
  const present = typeof template === 'string' ? template.length > 0 : Array.isArray(template) ? template.length > 0 : template !== undefined && template !== null;
  if (present) return undefined;
  return (
    `recipe.chatTemplate: the base model's tokenizer (${echoValue(base)}) has no chat template (none in ${CHAT_TEMPLATE_FILES.config}, no ${CHAT_TEMPLATE_FILES.jinja}), ` +
    `and a ${method} run asks its prompts as a chat: the evaluation job answers the eval prompts with the chat template for the reward gain. ` +
    `Set recipe.chatTemplate to "chatml", or use a base model that ships a chat template (most instruct models do).`
  );
}

function folderOf(uri: string): string {
  return uri.endsWith('/') ? uri : `${uri}/`;
}

interface ModelFile {
  readonly uri: string;
  readonly bytes: number;
}

/**
 * The reward model's own folder, as the job finds it (grpo.py reward_model_folder): the channel itself, or the `full/`
 * folder a reward job writes (`model/full/` in an artifact that holds the whole model/ folder), the first that holds a
 * config.json; its files, or undefined when none does (the job refuses that with its own message).
 */
async function rewardModelFolder(s3: ModelFileReader, channel: string): Promise<Map<string, ModelFile> | undefined> {
  for (const candidate of [channel, `${channel}full/`, `${channel}model/full/`]) {
    const files = await folderFiles(s3, candidate);
    if (files.has('config.json')) return files;
  }
  return undefined;
}

/** The files directly in an s3:// folder (not in its subfolders), by name. */
async function folderFiles(s3: ModelFileReader, folder: string): Promise<Map<string, ModelFile>> {
  return (await folderListing(s3, folder)).files;
}

/** The files directly in an s3:// folder, by name, and its subfolders' names (`name/`). */
async function folderListing(s3: ModelFileReader, folder: string): Promise<{ files: Map<string, ModelFile>; folders: Set<string> }> {
  const { bucket, key: prefix } = parseS3Uri(folder);
  const files = new Map<string, ModelFile>();
  const folders = new Set<string>();
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, Delimiter: '/', ContinuationToken: token }));
    for (const object of page.Contents ?? []) {
      const name = object.Key!.slice(prefix.length);
      files.set(name, { uri: `s3://${bucket}/${object.Key}`, bytes: object.Size ?? 0 });
    }
    for (const sub of page.CommonPrefixes ?? []) folders.add(sub.Prefix!.slice(prefix.length));
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return { files, folders };
}

/**
 * An object's bytes; undefined when it is gone (deleted since it was listed) or, given `unlessSha256`, when its
 * `sha256` metadata (stage-model writes it) says it holds those bytes: its body is then not read.
 */
async function readObject(s3: ModelFileReader, uri: string, unlessSha256?: string): Promise<Buffer | undefined> {
  const { bucket, key } = parseS3Uri(uri);
  let object: GetObjectCommandOutput;
  try {
    object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  } catch (e) {
    if ((e as Error).name === 'NoSuchKey') return undefined;
    throw e;
  }
  if (unlessSha256 !== undefined && object.Metadata?.[SHA256_METADATA] === unlessSha256) {
    (object.Body as { destroy?: () => void } | undefined)?.destroy?.(); // not read: the same bytes
    return undefined;
  }
  const bytes = await object.Body?.transformToByteArray();
  return bytes ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) : undefined;
}

function parseS3Uri(uri: string): { bucket: string; key: string } {
  const match = /^s3:\/\/([^/]+)\/(.*)$/s.exec(uri);
  if (!match) throw new Error(`not an s3:// URI: ${uri}`);
  return { bucket: match[1], key: match[2] };
}
