/**
 * Clinic files → TenantDirectory, loaded once at start-up. Every problem in every file is reported
 * in one VET_E_TENANT_INVALID error, one line each, naming the file and the field or JSON position.
 */
import { isIP } from 'node:net';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { VetError } from '../errors.js';
import { deepFreeze, ENV_VARS } from './env.js';
import type { NodeEnv } from './env.js';
import { TenantSchema } from './tenant.schema.js';
import type { Tenant } from './tenant.schema.js';

/** A clinic's secrets, read from the environment variables its file names. Never part of Tenant. */
export interface TenantSecrets {
  /** HMAC secret for `followUps.webhook` (from `followUps.webhook.secretEnv`), or null without a webhook. */
  readonly webhookSecret: string | null;
  /** Front-desk inbox token (from `desk.tokenEnv`), or null without one. */
  readonly deskToken: string | null;
}

export interface TenantDirectory {
  /** The clinic that owns this Twilio number (the signed `To`), or null. */
  byNumber(e164: string): Tenant | null;
  byId(id: string): Tenant | null;
  /** Every clinic, in file-name order. */
  all(): readonly Tenant[];
  /** Secrets of clinic `id`, resolved at load and frozen; both null for an unknown id. */
  secretsOf(id: string): TenantSecrets;
}

export interface LoadTenantsOptions {
  /** Where `secretEnv` / `tokenEnv` are looked up. Default: process.env. */
  env?: NodeJS.ProcessEnv | undefined;
  /** Production allows only https webhooks. Default: `env.NODE_ENV` when it is one of the three, else development. */
  nodeEnv?: NodeEnv | undefined;
}

/** Shortest accepted webhook secret or desk token (the desk applies the same 16–512, no-space rule). */
export const MIN_SECRET_LENGTH = 16;
const MAX_SECRET_LENGTH = 512;

const NO_SECRETS: TenantSecrets = Object.freeze({ webhookSecret: null, deskToken: null });

export async function loadTenants(dir: string, opts: LoadTenantsOptions = {}): Promise<TenantDirectory> {
  const env = opts.env ?? process.env;
  const nodeEnv = opts.nodeEnv ?? (env.NODE_ENV === 'production' || env.NODE_ENV === 'test' ? env.NODE_ENV : 'development');
  let names: string[];
  try {
    const entries = await readdir(dir, { withFileTypes: true });
    names = entries.filter((e) => e.isFile() && e.name.endsWith('.json')).map((e) => e.name).sort();
  } catch (err) {
    throw new VetError('VET_E_TENANTS_EMPTY', `${dir}: cannot read the clinic directory; set TENANTS_DIR to a folder of clinic .json files`, { cause: err });
  }
  if (names.length === 0) {
    throw new VetError('VET_E_TENANTS_EMPTY', `${dir}: no clinic .json file; add one (see config/tenants/riverside-vet.json) or set TENANTS_DIR`);
  }

  const problems: string[] = [];
  const loaded: { file: string; tenant: Tenant; secrets: TenantSecrets }[] = [];
  for (const name of names) {
    const file = join(dir, name);
    let text: string;
    try {
      text = (await readFile(file, 'utf8')).replace(/^\uFEFF/, ''); // editors on Windows add a BOM
    } catch (err) {
      problems.push(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'}); check its permissions`);
      continue;
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      const { offset, problem } = jsonErrorAt(text);
      const before = text.slice(0, offset).split('\n');
      problems.push(`${file}: invalid JSON at line ${before.length}, column ${(before.at(-1)?.length ?? 0) + 1}: ${problem}`);
      continue;
    }
    const result = TenantSchema.safeParse(json, { reportInput: true });
    if (!result.success) {
      problems.push(...result.error.issues.flatMap((issue) => issueLines(file, issue)));
      continue;
    }
    const checked = deploymentChecks(file, result.data, env, nodeEnv);
    problems.push(...checked.problems);
    loaded.push({ file, tenant: result.data, secrets: checked.secrets });
  }
  problems.push(...sharedDeskTokens(loaded));
  if (problems.length > 0) throw new VetError('VET_E_TENANT_INVALID', problems.join('\n'));

  type Entry = (typeof loaded)[number];
  const byId = new Map<string, Entry>();
  const byNumber = new Map<string, Entry>();
  for (const entry of loaded) {
    const { file, tenant } = entry;
    const sameId = byId.get(tenant.id);
    if (sameId) problems.push(`${file}: id "${tenant.id}" is already used by ${sameId.file}; give each clinic its own id`);
    byId.set(tenant.id, sameId ?? entry);
    for (const number of tenant.phoneNumbers) {
      const owner = byNumber.get(number);
      if (owner && owner !== entry) problems.push(`${file}: phone number ${number} is already claimed by ${owner.file}; a number routes to one clinic only`);
      if (!owner) byNumber.set(number, entry);
    }
  }
  if (problems.length > 0) throw new VetError('VET_E_TENANT_DUPLICATE', problems.join('\n'));

  // Frozen: calls copy tenant settings into machine input, and nothing may edit a shared clinic.
  const all = deepFreeze(loaded.map((e) => e.tenant));
  return Object.freeze({
    byNumber: (e164: string) => byNumber.get(e164)?.tenant ?? null,
    byId: (id: string) => byId.get(id)?.tenant ?? null,
    all: () => all,
    secretsOf: (id: string) => byId.get(id)?.secrets ?? NO_SECRETS,
  });
}

/**
 * What the file alone cannot show: the environment variables it names are set and long enough, and
 * the webhook URL suits NODE_ENV. Lines name the file and field, never a secret's value.
 */
function deploymentChecks(
  file: string,
  tenant: Tenant,
  env: NodeJS.ProcessEnv,
  nodeEnv: NodeEnv,
): { problems: string[]; secrets: TenantSecrets } {
  const problems: string[] = [];
  const secret = (field: string, name: string | undefined, what: string): string | null => {
    if (name === undefined) return null;
    const fix = `set it to ${what} (at least ${MIN_SECRET_LENGTH} characters, no spaces; e.g. from \`openssl rand -base64 24\`)`;
    if (ENV_VARS.includes(name)) {
      problems.push(`${file}: ${field}: ${name} is one of Vetline's own settings; name a variable of this clinic's own and ${fix}`);
      return null;
    }
    const value = env[name];
    if (value === undefined || value === '') {
      problems.push(`${file}: ${field}: environment variable ${name} is not set; ${fix}`);
      return null;
    }
    if (value.length < MIN_SECRET_LENGTH) {
      problems.push(`${file}: ${field}: environment variable ${name} is shorter than ${MIN_SECRET_LENGTH} characters; ${fix}`);
      return null;
    }
    if (value.length > MAX_SECRET_LENGTH || /\s/.test(value)) {
      problems.push(`${file}: ${field}: environment variable ${name} holds spaces or line breaks, or more than ${MAX_SECRET_LENGTH} characters; ${fix}`);
      return null;
    }
    return value;
  };

  const webhook = tenant.followUps.webhook;
  if (webhook) {
    const url = new URL(webhook.url); // the schema accepted it
    if (nodeEnv === 'production' && url.protocol !== 'https:') {
      problems.push(`${file}: followUps.webhook.url: must be https when NODE_ENV=production (got ${shownUrl(webhook.url)})`);
    } else if (url.protocol === 'http:' && !isLoopback(url.hostname)) {
      problems.push(`${file}: followUps.webhook.url: http is allowed only for a loopback host (localhost, 127.0.0.1, ::1); use https (got ${shownUrl(webhook.url)})`);
    }
  }
  const webhookSecret = secret('followUps.webhook.secretEnv', webhook?.secretEnv, "the webhook's shared secret");
  const deskToken = secret('desk.tokenEnv', tenant.desk?.tokenEnv, "the clinic's front-desk inbox token");
  if (webhook && tenant.desk && webhook.secretEnv === tenant.desk.tokenEnv) {
    problems.push(`${file}: desk.tokenEnv: ${tenant.desk.tokenEnv} is also followUps.webhook.secretEnv; give the desk token and the webhook secret different variables`);
  }
  return { problems, secrets: Object.freeze({ webhookSecret, deskToken }) };
}

/** The desk token says which clinic's inbox is open, so no two clinics may share one (by name or value). */
function sharedDeskTokens(loaded: readonly { file: string; tenant: Tenant; secrets: TenantSecrets }[]): string[] {
  const problems: string[] = [];
  const seen = new Map<string, string>(); // variable name or value → first file
  for (const { file, tenant, secrets } of loaded) {
    const name = tenant.desk?.tokenEnv;
    if (name === undefined) continue;
    const first = seen.get(`name:${name}`) ?? (secrets.deskToken === null ? undefined : seen.get(`value:${secrets.deskToken}`));
    if (first !== undefined) {
      problems.push(`${file}: desk.tokenEnv: this clinic's desk token is the same as ${first}'s; each clinic needs a token of its own (${name})`);
      continue;
    }
    seen.set(`name:${name}`, file);
    if (secrets.deskToken !== null) seen.set(`value:${secrets.deskToken}`, file);
  }
  return problems;
}

/** 127.0.0.0/8, ::1 and localhost (URL#hostname: IPv6 in brackets, IPv4 already normalized). */
function isLoopback(hostname: string): boolean {
  const host = hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return isIP(host) === 6 && host === '::1';
}

/** A URL as echoed in an error: credentials and query masked (they may hold secrets), long ones cut. */
function shownUrl(text: string): string {
  const masked = text.replace(/\/\/[^/@\s]*@/, '//***@').replace(/\?.*$/s, '?***');
  return JSON.stringify(masked.length > 60 ? `${masked.slice(0, 57)}...` : masked);
}

/** One line per problem: `<file>: <field.path>: <message>`; unknown keys get one line each. */
function issueLines(file: string, issue: z.core.$ZodIssue): string[] {
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => `${file}: ${fieldPath([...issue.path, key])}: unknown field (check the spelling against config/tenant.schema.json)`);
  }
  let message = issue.message;
  if (issue.code === 'invalid_key') message = issue.issues[0]?.message ?? message; // bad menu key
  if (issue.code === 'invalid_type' && issue.input === undefined) message = 'required';
  const input = issue.input;
  const got =
    message !== 'required' && (typeof input === 'string' || typeof input === 'number' || typeof input === 'boolean')
      ? ` (got ${typeof input === 'string' && input.includes('://') ? shownUrl(input) : JSON.stringify(typeof input === 'string' && input.length > 60 ? `${input.slice(0, 57)}...` : input)})`
      : '';
  return [`${file}: ${fieldPath(issue.path)}: ${message}${got}`];
}

/** `transfer.frontDesk`, `phoneNumbers[1]`, `menu["*"]`; `(file)` for the top level. */
function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else if (typeof key === 'string' && /^[A-Za-z_$][\w$]*$/.test(key)) out += out === '' ? key : `.${key}`;
    else out += `[${JSON.stringify(String(key))}]`;
  }
  return out === '' ? '(file)' : out;
}

class JsonSyntax extends Error {
  constructor(readonly offset: number) {
    super('JSON syntax error');
  }
}

/**
 * Where the first JSON syntax error is. Runs only after JSON.parse failed: Node 20's messages give
 * no position for most errors ("Unexpected token ..."), and an operator needs the line.
 */
function jsonErrorAt(text: string): { offset: number; problem: string } {
  let i = 0;
  let problem = '';
  const fail = (expected: string): never => {
    problem = i >= text.length ? `unexpected end of file, expected ${expected}` : `expected ${expected}`;
    throw new JsonSyntax(i);
  };
  const space = () => {
    while (i < text.length && ' \t\n\r'.includes(text.charAt(i))) i++;
  };
  const expect = (c: string, what: string) => {
    space();
    if (text[i] !== c) fail(what);
    i++;
  };
  const string = (what = 'a string in double quotes') => {
    expect('"', what);
    for (;;) {
      const c = text[i];
      if (c === undefined) fail('a closing double quote');
      else if (c === '"') return void i++;
      else if (c < ' ') fail('\\n instead of a raw line break or control character inside a string');
      else if (c === '\\') {
        const esc = /^(["\\/bfnrt]|u[0-9a-fA-F]{4})/.exec(text.slice(i + 1, i + 6));
        if (!esc) fail('a valid escape such as \\n, \\" or \\u00e9');
        i += 1 + (esc?.[0].length ?? 0);
      } else i++;
    }
  };
  const value = (): void => {
    space();
    const c = text[i];
    if (c === '"') return string();
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      i++;
      space();
      if (text[i] === close) return void i++;
      for (;;) {
        if (c === '{') {
          string('a property name in double quotes');
          expect(':', "':' after the property name");
        }
        value();
        space();
        if (text[i] === close) return void i++;
        expect(',', `',' or '${close}' (no trailing commas or comments)`);
        space();
        if (text[i] === close) fail('another item (JSON allows no trailing comma)');
      }
    }
    const literal = /-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?|true|false|null/y;
    literal.lastIndex = i;
    if (literal.exec(text)) i = literal.lastIndex;
    else fail('a value (string, number, true, false, null, object or array)');
  };
  try {
    value();
    space();
    if (i < text.length) fail('the end of the file after the top-level value');
    return { offset: text.length, problem: 'invalid JSON' }; // unreachable when JSON.parse failed
  } catch (err) {
    if (err instanceof JsonSyntax) return { offset: err.offset, problem };
    throw err;
  }
}

/** JSON Schema of a clinic file (input side: defaults shown, defaulted fields optional). */
export const tenantJsonSchema = () => z.toJSONSchema(TenantSchema, { io: 'input' });

/** The text of config/tenant.schema.json, as `npm run schema` writes it and a test checks it. */
export function tenantJsonSchemaText(): string {
  const schema = tenantJsonSchema();
  const banner = 'Generated from src/config/tenant.schema.ts by `npm run schema`. Do not edit.';
  return `${JSON.stringify({ $schema: schema.$schema, $comment: banner, ...schema }, null, 2)}\n`;
}
