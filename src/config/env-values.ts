/**
 * The readers of single environment variables that src/config/env.ts builds its schema from: each
 * turns the variable's text into a value, or into one error line `<problem> (got "<text>"); <fix>`
 * (secrets without the "got" part), to which loadEnv adds the variable's name.
 */
import { isIP } from 'node:net';
import { z } from 'zod';

/** Echo of a rejected non-secret value: URL credentials and query strings masked, long values cut. */
export const shown = (text: string) => {
  const masked = text.replace(/\/\/[^/@\s]*@/, '//***@').replace(/\?.*$/s, '?***');
  return JSON.stringify(masked.length > 60 ? `${masked.slice(0, 57)}...` : masked);
};

export type Fix = string | ((text: string) => string);

/**
 * One variable: `read` returns the value, or undefined when `text` is invalid. Its error line is
 * `<problem> (got "<text>"); <fix>`; secrets omit the "got" part. The variable name is added later.
 */
export const variable = <T>(read: (text: string) => T | undefined, problem: string, fix: Fix, o: { secret?: boolean; missing?: string } = {}) =>
  z.string(o.missing === undefined ? undefined : { error: o.missing }).transform((text, ctx): T => {
    const value = read(text);
    if (value !== undefined) return value;
    const got = o.secret ? '' : ` (got ${shown(text)})`;
    ctx.addIssue({ code: 'custom', message: `${problem}${got}; ${typeof fix === 'string' ? fix : fix(text)}` });
    return z.NEVER;
  });

export const integer = (name: string, min: number, max: number, fallback: number) =>
  variable(
    (t) => (/^\d{1,9}$/.test(t) && Number(t) >= min && Number(t) <= max ? Number(t) : undefined),
    `must be an integer ${min}-${max}`,
    `set ${name}=${fallback} or unset it`,
  ).default(fallback);

export const oneOf = <const V extends readonly string[]>(name: string, values: V, fallback: V[number]) =>
  variable(
    (t) => values.find((v): v is V[number] => v === t),
    `must be one of ${values.join('|')}`,
    `set ${name}=${fallback} or unset it`,
  )
    .optional() // not .default(): zod cannot type a default of a generic literal union
    .transform((v) => v ?? fallback);

/** Secrets: any value without whitespace (a pasted newline breaks every signature, silently). */
export const secret = (fix: string, missing?: string) =>
  variable((t) => (/^\S+$/.test(t) ? t : undefined), 'must not contain spaces or line breaks (value not shown)', fix, {
    secret: true,
    ...(missing === undefined ? {} : { missing }),
  });

/**
 * A bearer token a person types or a scraper sends: 32+ characters without whitespace (128 bits as
 * hex) and not a few characters repeated (a cheap guard against "aaaa…" and "passwordpassword…").
 */
export const strongTokenRequired = (missing?: string) =>
  variable(
    (t) => (/^\S{32,512}$/.test(t) && new Set(t).size >= 10 ? t : undefined),
    'too weak: use at least 32 random characters without spaces, not a few repeated (value not shown)',
    'generate one with `openssl rand -hex 32`',
    { secret: true, ...(missing === undefined ? {} : { missing }) },
  );
export const strongToken = () => strongTokenRequired().optional();

export const HOSTNAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;

export const parseUrl = (t: string) => {
  try {
    return new URL(t);
  } catch {
    return null;
  }
};

/** Vendor base URL override (fake servers in tests): http(s), no credentials, query or fragment. */
export const baseUrl = (name: string, example: string) =>
  variable(
    (t) => {
      const u = parseUrl(t);
      const ok = u && /^https?:$/.test(u.protocol) && !u.username && !u.password && !u.search && !u.hash;
      return ok ? t : undefined;
    },
    'must be an http(s) URL without credentials, query or fragment',
    `set ${name}=${example} or unset it`,
  ).optional();

/** A model or voice id as the vendors spell them: letters, digits, `-`, `_`, `.`. */
export const modelName = (name: string, fallback: string) =>
  variable(
    (t) => (/^[A-Za-z0-9][\w.-]{0,99}$/.test(t) ? t : undefined),
    'must be a model or voice id (letters, digits, - _ .)',
    `set ${name}=${fallback} or unset it`,
  ).default(fallback);

/** trustProxy entries: an IP, an IP/prefix, or proxy-addr's named ranges. Never `true` or a hop count. */
export const proxyEntry = (e: string) => {
  if (['loopback', 'linklocal', 'uniquelocal'].includes(e)) return true;
  const [ip = '', prefix, extra] = e.split('/');
  const family = isIP(ip);
  if (family === 0 || extra !== undefined) return false;
  return prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128));
};

/** A provider variable; `needs` names the key each cloud value requires and whether it is set. */
export const provider = <const V extends readonly string[]>(name: string, values: V, needs: Partial<Record<V[number], readonly [keyVar: string, hasKey: boolean]>>) =>
  oneOf(name, values, 'auto').superRefine((value, ctx) => {
    const need = needs[value as V[number]];
    if (need && !need[1]) ctx.addIssue({ code: 'custom', message: `${value} needs ${need[0]}; set ${need[0]} or set ${name}=auto` });
  });

/** Where finished call journals are copied (JOURNAL_S3_URL; src/journal/s3-shipper.ts). */
export interface JournalS3Target {
  readonly bucket: string;
  /** Key prefix: empty, or ending in "/". */
  readonly prefix: string;
  /** S3-compatible storage (path-style requests to this origin); null: AWS S3 itself. */
  readonly endpoint: string | null;
}

/** S3's bucket naming rules, the part that matters for a URL: 3-63 of a-z 0-9 . -, alphanumeric at both ends. */
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/**
 * `s3://<bucket>[/<prefix>]` (AWS S3) or `http(s)://<host>[:<port>]/<bucket>[/<prefix>]`
 * (S3-compatible storage; plain http only outside production). Credentials never ride in the URL:
 * the AWS SDK takes them from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the machine's role.
 */
export function readJournalS3Url(t: string, production: boolean): JournalS3Target | undefined {
  const u = parseUrl(t);
  if (!u || u.username !== '' || u.password !== '' || u.search !== '' || u.hash !== '' || /\s/.test(t)) return undefined;
  // "." and ".." segments (also percent-encoded), which URL parsing would quietly resolve away.
  if (/\/(\.|%2e){1,2}(\/|$)/i.test(t)) return undefined;
  let segments: string[];
  try {
    segments = u.pathname.split('/').filter((s) => s !== '').map((s) => decodeURIComponent(s));
  } catch {
    return undefined;
  }
  let bucket: string | undefined;
  let endpoint: string | null;
  if (u.protocol === 's3:') {
    bucket = u.hostname;
    endpoint = null;
  } else if (u.protocol === 'https:' || (u.protocol === 'http:' && !production)) {
    bucket = segments.shift();
    endpoint = u.origin;
  } else return undefined;
  if (bucket === undefined || !BUCKET.test(bucket)) return undefined;
  return { bucket, prefix: segments.length > 0 ? `${segments.join('/')}/` : '', endpoint };
}
