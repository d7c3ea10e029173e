/**
 * The error catalog. A code means one failure forever: never reuse or rename a code, retire it.
 * Every code here is documented in docs/errors.md (test/errors.test.ts keeps the two in step).
 */
export const ERROR_CODES = {
  VET_E_CONFIG: 'An environment variable is missing or invalid.',
  VET_E_TENANT_INVALID: 'A clinic file in TENANTS_DIR is not valid JSON or does not match the tenant schema.',
  VET_E_TENANT_DUPLICATE: 'Two clinic files claim the same id or the same phone number.',
  VET_E_TENANTS_EMPTY: 'TENANTS_DIR holds no clinic file.',
  VET_E_SIGNATURE: 'A webhook or WebSocket upgrade failed Twilio signature validation.',
  VET_E_RATE_LIMITED: 'Too many requests failed validation from one address.',
  VET_E_BAD_REQUEST: 'A webhook body is malformed (missing or repeated fields, wrong content type).',
  VET_E_ACCOUNT_MISMATCH: 'A webhook came from a Twilio account other than the configured one.',
  VET_E_UNKNOWN_NUMBER: 'A call arrived for a number no clinic claims.',
  VET_E_UNKNOWN_CALL: 'A callback names a CallSid this process does not know.',
  VET_E_STREAM_TOKEN: 'A Media Stream presented a malformed, forged, expired, reused or mismatched stream token.',
  VET_E_STREAM_TIMEOUT: 'A Media Stream socket sent no valid start message in time.',
  VET_E_BAD_FRAME: 'A Media Stream frame was malformed and was dropped.',
  VET_E_STREAM_CAPACITY: 'A Media Stream upgrade was refused: more sockets awaiting their start message than the process holds calls (MAX_CALLS).',
  VET_E_STREAM_BACKPRESSURE: 'A Media Stream peer stopped reading our audio; the stream was closed.',
  VET_E_CALL_CRASHED: 'An exception inside one call actor ended that call.',
  VET_E_PROVIDER: 'A speech or agent provider failed.',
  VET_E_TWILIO_REST: 'A Twilio REST request (transfer, hang-up, recording) failed.',
  VET_E_JOURNAL: 'The call journal could not be written (JOURNAL_DIR unwritable, disk full); calls go on without it.',
  VET_E_DELIVERY: "A follow-up or call summary could not be delivered to the clinic's webhook, e-mail or SMS (an attempt failed, or delivery gave up).",
  VET_E_STORE: 'The durable store (SQLite file or PostgreSQL server in DATABASE_URL) could not be opened or migrated at start-up.',
  VET_E_REDIS: 'Redis (REDIS_URL) could not be reached or refused a command: at start-up the engine stops; mid-run shared state degrades (see docs/operations.md).',
  VET_E_BODY_TOO_LARGE: 'An HTTP request body exceeded the configured limit (16 KiB on webhooks).',
  VET_E_NOT_FOUND: 'No route matches the HTTP method and path.',
  VET_E_INTERNAL: 'An unexpected error in an HTTP handler; details are in the server log, never in the response.',
  VET_E_DESK_AUTH: 'A front-desk request had no valid desk token or session, or a cookie-authenticated change came from another site.',
  VET_E_DESK_BUSY: 'A front-desk live event stream was refused: too many are open in this process.',
  VET_E_LOCAL_ONLY: 'A development convenience (open inspector, call list, metrics or desk; unsigned webhooks) was refused: the request did not come from this machine, or named another host.',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class VetError extends Error {
  override readonly name = 'VetError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export const isVetError = (e: unknown): e is VetError => e instanceof VetError;
