/**
 * A fake S3-compatible object store on 127.0.0.1, port 0, for JOURNAL_S3_URL: path-style
 * `PUT /{bucket}/{key}` (PutObject), answered as S3 answers it, so the real AWS SDK talks to it.
 *
 * Like S3, it authenticates every request with AWS Signature Version 4: the `Authorization` header's
 * credential must name a known access key, its signature must match the request recomputed with
 * that key's secret (canonical request of the method, path, query, the signed headers and the
 * `x-amz-content-sha256` payload hash), the payload hash must be the body's SHA-256, and
 * `x-amz-date` must be within 15 minutes. Failures come back as S3's XML errors
 * (`InvalidAccessKeyId`, `SignatureDoesNotMatch`, `XAmzContentSHA256Mismatch`,
 * `RequestTimeTooSkewed`, `NoSuchBucket`) with S3's status codes. Streaming (`aws-chunked`) bodies
 * are refused with 501: the engine sends whole journals.
 *
 * Scriptable: `failNext(n, status)` answers the next n PUTs with S3's `InternalError` (500) or
 * `SlowDown` (503); `setLatency(ms)` slows the answers. Observable: stored objects, and every request with the status it got.
 * Each answer waits `latencyMs` (default 20 ms, a nearby region's PUT of a small object).
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { listenOnLoopback, sleep } from './fault-plan.js';

export interface FakeS3Object {
  body: Buffer;
  contentType: string | undefined;
  /** How many PUTs wrote this key. */
  puts: number;
}

export interface FakeS3Request {
  method: string;
  path: string;
  status: number;
  /** S3's error code, or null for a success. */
  error: string | null;
}

export interface FakeS3 {
  readonly url: string;
  readonly objects: Map<string, FakeS3Object>;
  readonly requests: FakeS3Request[];
  /** Answers the next `n` PUTs with a server error (500 InternalError or 503 SlowDown). */
  failNext(n: number, status?: 500 | 503): void;
  /** How long each later answer waits. */
  setLatency(ms: number): void;
  close(): Promise<void>;
}

export interface FakeS3Options {
  /** Access key id → secret access key. */
  credentials: Record<string, string>;
  buckets: string[];
  latencyMs?: number;
}

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');
const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data).digest();

/** `Authorization: AWS4-HMAC-SHA256 Credential=AKID/20261208/us-east-1/s3/aws4_request, SignedHeaders=a;b, Signature=hex`. */
function parseAuthorization(header: string | undefined) {
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/s3\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/.exec(header ?? '');
  if (!m) return null;
  const [, accessKey, date, region, signedHeaders, signature] = m as unknown as [string, string, string, string, string, string];
  return { accessKey, date, region, signedHeaders: signedHeaders.split(';'), signature };
}

/** `20261208T001500Z` → ms since the epoch, or NaN. */
const amzDateMs = (v: string | undefined) => {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(v ?? '');
  return m ? Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!) : Number.NaN;
};

/** Query parameters sorted and encoded as SigV4 wants them. */
function canonicalQuery(search: string): string {
  const params = [...new URLSearchParams(search)].map(([k, v]) => [encode(k), encode(v)] as const);
  params.sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0));
  return params.map(([k, v]) => `${k}=${v}`).join('&');
}
const encode = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

export async function startFakeS3(opts: FakeS3Options): Promise<FakeS3> {
  const objects = new Map<string, FakeS3Object>();
  const requests: FakeS3Request[] = [];
  const buckets = new Set(opts.buckets);
  let latencyMs = opts.latencyMs ?? 20;
  let failing: { left: number; status: 500 | 503 } = { left: 0, status: 500 };

  const answer = async (req: IncomingMessage, res: ServerResponse, path: string, status: number, error: string | null, message = '') => {
    requests.push({ method: req.method ?? '', path, status, error });
    await sleep(latencyMs);
    const requestId = sha256(String(Math.random())).slice(0, 16).toUpperCase();
    res.setHeader('x-amz-request-id', requestId);
    res.setHeader('server', 'AmazonS3');
    if (error === null) {
      res.writeHead(status).end();
      return;
    }
    res.writeHead(status, { 'content-type': 'application/xml' });
    res.end(`<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${error}</Code><Message>${message}</Message><RequestId>${requestId}</RequestId></Error>`);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse, body: Buffer) => {
    const url = new URL(req.url ?? '/', 'http://s3.test');
    const path = url.pathname;
    const auth = parseAuthorization(req.headers.authorization);
    if (!auth) return answer(req, res, path, 403, 'AccessDenied', 'Unsupported or missing Authorization');
    const secret = opts.credentials[auth.accessKey];
    if (secret === undefined) return answer(req, res, path, 403, 'InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.');
    const amzDate = req.headers['x-amz-date'] as string | undefined;
    const at = amzDateMs(amzDate);
    if (!Number.isFinite(at) || Math.abs(Date.now() - at) > 15 * 60_000 || !amzDate?.startsWith(auth.date)) {
      return answer(req, res, path, 403, 'RequestTimeTooSkewed', 'The difference between the request time and the current time is too large.');
    }
    const payloadHash = req.headers['x-amz-content-sha256'] as string | undefined;
    if (payloadHash === undefined || !auth.signedHeaders.includes('host') || !auth.signedHeaders.includes('x-amz-content-sha256')) {
      return answer(req, res, path, 400, 'InvalidRequest', 'Missing required header for this request: x-amz-content-sha256');
    }
    if (payloadHash.startsWith('STREAMING-') || req.headers['content-encoding']?.includes('aws-chunked')) {
      return answer(req, res, path, 501, 'NotImplemented', 'This fake does not take aws-chunked bodies.');
    }
    if (payloadHash !== 'UNSIGNED-PAYLOAD' && payloadHash !== sha256(body)) {
      return answer(req, res, path, 400, 'XAmzContentSHA256Mismatch', "The provided 'x-amz-content-sha256' header does not match what was computed.");
    }
    const canonicalHeaders = auth.signedHeaders
      .map((name) => {
        const value = req.headers[name];
        const text = Array.isArray(value) ? value.join(',') : (value ?? '');
        return `${name}:${text.trim().replace(/\s+/g, ' ')}\n`;
      })
      .join('');
    const canonicalRequest = [req.method, path, canonicalQuery(url.search), canonicalHeaders, auth.signedHeaders.join(';'), payloadHash].join('\n');
    const scope = `${auth.date}/${auth.region}/s3/aws4_request`;
    const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonicalRequest)].join('\n');
    const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, auth.date), auth.region), 's3'), 'aws4_request');
    const expected = hmac(key, stringToSign);
    if (!timingSafeEqual(expected, Buffer.from(auth.signature, 'hex'))) {
      return answer(req, res, path, 403, 'SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided.');
    }

    // Path style: /{bucket}/{key}, the key percent-decoded.
    const [, bucket = '', ...rest] = path.split('/');
    if (!buckets.has(bucket)) return answer(req, res, path, 404, 'NoSuchBucket', 'The specified bucket does not exist');
    if (req.method !== 'PUT' || rest.length === 0) return answer(req, res, path, 405, 'MethodNotAllowed', 'Only PutObject is implemented here.');
    if (failing.left > 0) {
      failing.left--;
      return failing.status === 503
        ? answer(req, res, path, 503, 'SlowDown', 'Please reduce your request rate.')
        : answer(req, res, path, 500, 'InternalError', 'We encountered an internal error. Please try again.');
    }
    const objectKey = `${bucket}/${rest.map((s) => decodeURIComponent(s)).join('/')}`;
    objects.set(objectKey, { body, contentType: req.headers['content-type'], puts: (objects.get(objectKey)?.puts ?? 0) + 1 });
    res.setHeader('etag', `"${createHash('md5').update(body).digest('hex')}"`);
    return answer(req, res, path, 200, null);
  };

  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => void handle(req, res, Buffer.concat(chunks)));
  });
  const port = await listenOnLoopback(server, sockets);
  return {
    url: `http://127.0.0.1:${port}`,
    objects,
    requests,
    failNext(n, status = 500) {
      failing = { left: n, status };
    },
    setLatency(ms) {
      latencyMs = ms;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
