/**
 * Entry point: parse the environment and the clinic files once, open the store, build the
 * providers, the pre-rendered prompts and the delivery outbox, start the server, and drain calls
 * on SIGTERM/SIGINT. With WORKERS > 1 this process is the cluster primary (src/cluster/primary.ts)
 * and each worker process runs the rest.
 */
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { BUDGETS } from '../machines/call/budgets.js';
import { createRecordingTranscriber } from './calls/recording-transcriber.js';
import { loadEnv, type AppConfig } from './config/env.js';
import { loadTenants } from './config/tenants.js';
import { clinicDeliveries } from './delivery/clinics.js';
import { createEmailSender } from './delivery/email.js';
import { createOutbox } from './delivery/outbox.js';
import { createSmsSender } from './delivery/sms.js';
import { openStore } from './store/index.js';
import { isVetError } from './errors.js';
import { pruneJournals } from './journal/retention.js';
import type { JournalShipper } from './journal/s3-shipper.js';
import { openJournalDir } from './journal/writer.js';
import { createLogger } from './observability/logger.js';
import { createProviders } from './providers/index.js';
import { checkRedis, openSharedState } from './redis/index.js';
import { sttVocabularyFor } from './providers/stt/local-grammar.js';
import { buildServer, type Drain } from './server.js';
import { createRecordingFetcher } from './twilio/recording-download.js';
import { createTwilioRest } from './twilio/rest.js';
import { runPrimary, workerEnv } from './cluster/primary.js';
import { clusterWorker } from './cluster/worker.js';

/** The hard exit fires this long after DRAIN_TIMEOUT_MS: hand-off (≤ 5 s REST + ≤ 5 s stop) and close fit inside. */
const HARD_EXIT_AFTER_DRAIN_MS = BUDGETS.hardExitAfterDrainMs;

const version = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

function fail(err: unknown): never {
  // Start-up errors are for a human at a terminal: one clear message, no stack for known codes.
  if (isVetError(err)) process.stderr.write(`vetline: ${err.code}\n${err.message}\n`);
  else process.stderr.write(`vetline: start-up failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
}

async function main(): Promise<void> {
  let config: AppConfig;
  try {
    config = loadEnv(process.env);
  } catch (err) {
    fail(err);
  }
  const logger = createLogger({ level: config.logLevel });
  if (config.workers > 1 && cluster.isPrimary) {
    // An unreachable Redis is said once, here, and stops start-up: not by every worker in turn.
    if (config.redisUrl) await checkRedis(config.redisUrl, logger).catch(fail);
    runPrimary({ workers: config.workers, logger, env: workerEnv(process.env) });
    return;
  }
  const worker = cluster.isWorker ? clusterWorker() : null;
  const tenants = await loadTenants(config.tenantsDir, { nodeEnv: config.nodeEnv }).catch(fail);
  const store = await openStore(config.databaseUrl).catch(fail);
  // REDIS_URL: state shared with the other instances (docs/operations.md "Several instances"); unreachable → VET_E_REDIS.
  const shared = config.redisUrl ? await openSharedState({ url: config.redisUrl, heartbeatMs: config.redisHeartbeatMs, logger }).catch(fail) : null;
  const startedAt = performance.now();
  const { providers, prompts, recordingStt, summarizer } = await createProviders(config, tenants.all(), logger).catch(fail);
  const rest =
    config.twilio.accountSid && config.twilio.authToken
      ? createTwilioRest({ accountSid: config.twilio.accountSid, authToken: config.twilio.authToken, logger })
      : null;
  // Completed recordings are transcribed after the call (docs/recordings.md); downloading them needs the credentials.
  const transcriber =
    config.twilio.accountSid && config.twilio.authToken
      ? createRecordingTranscriber({
          fetchRecording: createRecordingFetcher({ accountSid: config.twilio.accountSid, authToken: config.twilio.authToken }),
          stt: recordingStt,
          vad: providers.vad,
          tenantVocabulary: (id) => {
            const tenant = tenants.byId(id);
            return tenant ? sttVocabularyFor(tenant) : [];
          },
          tenantLanguage: (id) => tenants.byId(id)?.voice.language ?? 'en-US',
          logger,
        })
      : undefined;
  // An unwritable JOURNAL_DIR is a warning, not a start-up failure: calls matter more than their journals.
  let shipper: JournalShipper | null = null;
  const journal = await openJournalDir({ dir: config.journalDir, engineVersion: version, logger, onClosed: (path) => shipper?.closed(path) });
  // JOURNAL_S3_URL (docs/operations.md "Journals in S3"): finished journals are copied there, JOURNAL_DIR their spool.
  if (config.journalS3 && journal) {
    // Loaded only when configured: the AWS SDK is large, and most deployments keep journals local.
    const { createS3Shipper } = await import('./journal/s3-shipper.js');
    shipper = createS3Shipper({ dir: journal.dir, target: config.journalS3, region: config.awsRegion, logger, isOpen: (path) => journal.isOpen(path) });
    shipper.start();
  } else if (config.journalS3) logger.warn({ code: 'VET_E_JOURNAL' }, 'JOURNAL_S3_URL is set but no journals are written (JOURNAL_DIR is not writable): nothing will be shipped');
  if (journal && config.journalRetentionDays > 0) {
    const prune = () =>
      pruneJournals(journal.dir, { maxAgeDays: config.journalRetentionDays })
        .then(({ deleted }) => deleted > 0 && logger.info({ deleted, retentionDays: config.journalRetentionDays }, 'old journals deleted'))
        .catch((err: unknown) => logger.warn({ err, code: 'VET_E_JOURNAL' }, 'journal retention failed'));
    void prune();
    setInterval(() => void prune(), 6 * 3_600_000).unref();
  }
  // Follow-through (docs/follow-ups.md): what calls produce is stored, then pushed to each clinic.
  const clinicDelivery = clinicDeliveries(tenants, { smtp: config.smtpUrl !== null, sms: rest !== null });
  const emailSender = config.smtpUrl ? createEmailSender({ smtpUrl: config.smtpUrl }) : null;
  const outbox = createOutbox({ store, clinic: clinicDelivery, logger, version, senders: { email: emailSender, sms: rest ? createSmsSender(rest) : null } });
  // One process owns an SQLite file: deliveries held for calls that died with the last process are due now.
  // With PostgreSQL other instances may still be on those calls; their holds expire on their own.
  // Of a cluster's workers only the first one started, once (a restarted worker's siblings hold live calls).
  if (store.kind === 'sqlite' && (cluster.worker?.id ?? 1) === 1) {
    const released = await store.releaseHeld(Date.now()).catch(fail);
    if (released > 0) logger.warn({ released }, 'follow-ups of calls cut short by the last shutdown are now due');
  }
  const prune = () => {
    for (const tenant of tenants.all()) {
      const before = Date.now() - tenant.followUps.retentionDays * 86_400_000;
      store.prune(tenant.id, before).then(
        (deleted) => deleted > 0 && logger.info({ tenantId: tenant.id, deleted, retentionDays: tenant.followUps.retentionDays }, 'old follow-ups deleted'),
        (err: unknown) => logger.warn({ err, code: 'VET_E_STORE', tenantId: tenant.id }, 'follow-up retention failed'),
      );
    }
  };
  prune();
  setInterval(prune, 6 * 3_600_000).unref();
  const recordings =
    config.twilio.accountSid && config.twilio.authToken ? createRecordingFetcher({ accountSid: config.twilio.accountSid, authToken: config.twilio.authToken }) : null;
  const accountSid = config.twilio.accountSid;
  const engine = await buildServer({
    config, tenants, providers, prompts, rest, logger, version, journal, shared,
    ...(transcriber ? { transcriber } : {}),
    // With REDIS_URL every worker is an instance of its own there; without, the primary is the shared place.
    ...(worker ? { cluster: worker.view, ...(shared ? {} : { tokenUses: worker.tokenUses, handoff: worker.handoff }) } : {}),
    followUps: {
      store,
      outbox,
      clinicDelivery,
      summarizer,
      ...(recordings && accountSid
        ? { fetchRecording: async (sid: string, signal: AbortSignal) => ({
            body: Buffer.from(await recordings(`https://api.twilio.com/2010-04-01/Accounts/${accountSid}/Recordings/${sid}`, signal)),
            contentType: 'audio/x-wav',
          }) }
        : {}),
    },
  });
  outbox.start();
  const { app, registry } = engine;
  worker?.serve(registry, engine.metrics.register);
  await app.listen({ port: config.port, host: config.host });
  logger.info(
    {
      version,
      ...(worker ? { worker: worker.view.workerId } : {}),
      mode: config.mode,
      clinics: tenants.all().map((t) => t.id),
      providers: config.providers,
      webhookValidation: config.webhookValidation,
      twilioRest: rest ? 'on' : 'off (no TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN: transfers and hang-ups fall back)',
      publicBaseUrl: config.publicBaseUrl,
      journal: journal ? journal.dir : 'off',
      journalS3: shipper && config.journalS3 ? { bucket: config.journalS3.bucket, prefix: config.journalS3.prefix, endpoint: config.journalS3.endpoint ?? 'AWS S3' } : 'off',
      store: store.kind,
      shared: shared ? { redis: shared.target, instance: shared.instanceId } : 'off (no REDIS_URL: one instance)',
      readyInMs: Math.round(performance.now() - startedAt),
    },
    'vetline ready',
  );

  // docs/design/reliability.md §3: drain on the first signal, hand calls off at once on the second; exit 0 when
  // done, or 1 from the unref'd hard timer if the drain itself hangs.
  let drain: Drain | null = null;
  const shutdown = (signal: string) => {
    if (drain) {
      logger.warn({ signal, activeCalls: registry.activeCount }, 'second signal: handing calls off now');
      drain.handOffNow();
      return;
    }
    logger.info({ signal, activeCalls: registry.activeCount, drainTimeoutMs: config.drainTimeoutMs }, 'draining: no new calls');
    setTimeout(() => {
      logger.error({ code: 'VET_E_INTERNAL', hardExitMs: config.drainTimeoutMs + HARD_EXIT_AFTER_DRAIN_MS }, 'drain did not finish; exiting');
      process.exit(1);
    }, config.drainTimeoutMs + HARD_EXIT_AFTER_DRAIN_MS).unref();
    drain = engine.drain(config.drainTimeoutMs);
    drain.done.then(
      () => {
        emailSender?.close();
        void Promise.all([
          store.close().catch(() => undefined),
          shared?.close().catch(() => undefined),
          shipper?.close(BUDGETS.journalShipWaitMs).catch(() => undefined),
        ]).then(() => {
          logger.info({ journal: journal?.stats ?? null, journalsShipped: shipper?.stats ?? 'off', deliveries: outbox.stats() }, 'stopped');
          process.exit(0);
        });
      },
      (err: unknown) => {
        logger.error({ err, code: 'VET_E_INTERNAL' }, 'drain failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  // A worker leaves SIGINT to the primary: a terminal's Ctrl-C reaches every process of the group,
  // and the primary forwards it as SIGTERM (twice would hand calls off at once).
  process.on('SIGINT', () => (worker ? undefined : shutdown('SIGINT')));
}

void main().catch(fail);
