/**
 * One call's Twilio REST requests: the transfer (`<Dial>` to the front desk or the emergency line),
 * the hang-up, the drain hand-off and the start of a recording. Each is bounded by
 * `BUDGETS.restRequestMs`: the caller hears silence while one runs, and the silence rule is 3 s
 * (docs/design/reliability.md §2); Twilio answers calls.update in well under 1 s.
 */
import type { Logger } from 'pino';
import { BUDGETS } from '../../machines/call/budgets.js';
import type { TransferTarget } from '../../machines/call/call.types.js';
import type { Tenant } from '../config/tenant.schema.js';
import { VetError } from '../errors.js';
import type { TwilioRest } from '../twilio/rest-types.js';
import { busyTwiml, dialTwiml, TWILIO_PATHS } from '../twilio/twiml.js';

export class CallRest {
  constructor(
    private readonly callSid: string,
    private readonly tenant: Tenant,
    /** Null rest: no Twilio credentials (development), so every request fails and the machine fails over. */
    private readonly deps: { rest: TwilioRest | null; publicBaseUrl: string },
    private readonly log: Logger,
  ) {}

  async transfer(target: TransferTarget, signal: AbortSignal): Promise<void> {
    const number = target === 'emergency' ? this.tenant.transfer.emergency : this.tenant.transfer.frontDesk;
    if (!number) throw new VetError('VET_E_TWILIO_REST', `clinic has no ${target} number`);
    const twiml = dialTwiml({
      number,
      callerId: this.tenant.phoneNumbers[0] ?? number,
      ringSeconds: this.tenant.transfer.ringSeconds,
      actionUrl: `${this.deps.publicBaseUrl}${TWILIO_PATHS.dial}`,
    });
    await this.request('transfer', (rest, s) => rest.updateCallTwiml(this.callSid, twiml, s), signal);
    this.log.info({ target }, 'call transferred');
  }

  hangup(signal: AbortSignal): Promise<void> {
    return this.request('hangup', (rest, s) => rest.hangup(this.callSid, s), signal);
  }

  /** The drain hand-off: a short notice and <Dial> to the front desk (twiml.ts busyTwiml). */
  async handOffToFrontDesk(signal: AbortSignal): Promise<void> {
    const twiml = busyTwiml(this.tenant, { baseUrl: this.deps.publicBaseUrl, callerId: this.tenant.phoneNumbers[0] ?? null });
    await this.request('handoff', (rest, s) => rest.updateCallTwiml(this.callSid, twiml, s), signal);
    this.log.info('call handed off to the front desk');
  }

  /** Never throws: a recording that cannot start is logged and the call goes on. */
  async startRecording(): Promise<void> {
    try {
      const url = `${this.deps.publicBaseUrl}${TWILIO_PATHS.recording}`;
      const { recordingSid } = await this.request('recording', (rest, s) => rest.startRecording(this.callSid, url, s), new AbortController().signal);
      this.log.info({ recordingSid }, 'recording started');
    } catch (err) {
      this.log.warn({ err }, 'recording could not be started');
    }
  }

  private async request<T>(operation: string, run: (rest: TwilioRest, signal: AbortSignal) => Promise<T>, signal: AbortSignal): Promise<T> {
    const rest = this.deps.rest;
    if (!rest) throw new VetError('VET_E_TWILIO_REST', `${operation} needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN`);
    return run(rest, AbortSignal.any([signal, AbortSignal.timeout(BUDGETS.restRequestMs)]));
  }
}
