/**
 * Scriptable, observable agent for tests and the `fake` provider name. Each committed turn consumes
 * the next script step (shared FIFO across sessions; a reply that is only prepared reads the step
 * and gives it back unless its turn is committed, as a vendor answers the same question the same
 * way twice): a string (streamed as word deltas), a list of
 * outputs, a function of the turn, or an Error (thrown). When the script runs out it says
 * `fallback`. Outputs stop as soon as the turn's signal aborts; `delay` is awaited before each
 * output (inject a virtual clock). Sessions and turns are recorded: the most recent `keep`
 * sessions, since one fake serves every call of an engine started with `AGENT_PROVIDER=fake`.
 */
import type { Tenant } from '../../config/tenant.schema.js';
import type { AgentOutput, AgentProvider, AgentSession, AgentTurn } from './types.js';

export type FakeAgentStep =
  | string
  | readonly AgentOutput[]
  | Error
  | ((turn: AgentTurn, tenant: Tenant) => string | readonly AgentOutput[]);

export interface FakeAgentOptions {
  script?: readonly FakeAgentStep[];
  /** Said when the script is exhausted. Default "Okay." */
  fallback?: string;
  delay?: (outputIndex: number, signal: AbortSignal) => Promise<void>;
  /** Sessions kept in `sessions` (most recent). Default 100. */
  keep?: number;
}

/** "Hello there." → [{delta:"Hello "}, {delta:"there."}] */
export const deltas = (text: string): AgentOutput[] =>
  text.split(/(?<= )/).filter(Boolean).map((t) => ({ type: 'delta', text: t }));

export class FakeAgentSession implements AgentSession {
  readonly turns: AgentTurn[] = [];
  /** Outputs actually yielded, per turn. */
  readonly outputs: AgentOutput[][] = [];

  constructor(readonly tenant: Tenant, private readonly provider: FakeAgentProvider) {}

  async *respond(turn: AgentTurn): AsyncGenerator<AgentOutput> {
    this.turns.push(turn);
    const sent: AgentOutput[] = [];
    this.outputs.push(sent);
    let step = this.provider.peek();
    const take = () => this.provider.take(step);
    if (turn.committed) void turn.committed.then(take);
    else take();
    if (typeof step === 'function') step = step(turn, this.tenant);
    if (step instanceof Error) throw step;
    const items = typeof step === 'string' ? deltas(step) : step;
    for (let i = 0; i < items.length; i++) {
      if (this.provider.delay) await this.provider.delay(i, turn.signal);
      if (turn.signal.aborted) return;
      sent.push(items[i]!);
      yield items[i]!;
    }
  }
}

export class FakeAgentProvider implements AgentProvider {
  readonly name = 'fake';
  readonly sessions: FakeAgentSession[] = [];
  readonly delay: FakeAgentOptions['delay'];
  private readonly script: FakeAgentStep[];
  private readonly fallback: string;
  private readonly keep: number;

  constructor(options: FakeAgentOptions = {}) {
    this.script = [...(options.script ?? [])];
    this.fallback = options.fallback ?? 'Okay.';
    this.delay = options.delay;
    this.keep = options.keep ?? 100;
  }

  enqueue(...steps: FakeAgentStep[]): void {
    this.script.push(...steps);
  }

  /** The step the next turn is answered with (the fallback line when the script is exhausted). */
  peek(): FakeAgentStep {
    return this.script[0] ?? this.fallback;
  }

  /** The turn answered with `step` was committed: the script moves on (once per step). */
  take(step: FakeAgentStep): void {
    if (this.script[0] === step) this.script.shift();
  }

  startSession(tenant: Tenant): FakeAgentSession {
    const session = new FakeAgentSession(tenant, this);
    this.sessions.push(session);
    if (this.sessions.length > this.keep) this.sessions.shift();
    return session;
  }

  /** Every turn of every kept session, in order. */
  get turns(): AgentTurn[] {
    return this.sessions.flatMap((s) => s.turns);
  }
}

export const createFakeAgent = (options: FakeAgentOptions = {}) => new FakeAgentProvider(options);
