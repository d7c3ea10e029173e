/**
 * What the engine asks of Twilio's REST API on a live call. The real client (src/twilio/rest.ts)
 * uses the twilio package; tests inject a recorder or point the real client at a fake server.
 */
export interface TwilioRest {
  /** Replace the live call's TwiML (e.g. <Dial> to staff). Resolves once Twilio accepted it. */
  updateCallTwiml(callSid: string, twiml: string, signal: AbortSignal): Promise<void>;
  /** End the live call. */
  hangup(callSid: string, signal: AbortSignal): Promise<void>;
  /** Start a dual-channel recording with a status callback (completed only). */
  startRecording(callSid: string, statusCallbackUrl: string, signal: AbortSignal): Promise<{ recordingSid: string }>;
}

/**
 * Twilio Messaging (src/delivery/sms.ts): kept apart from TwilioRest so the call path's recorders
 * and fakes need not implement it. The real client (createTwilioRest) implements both.
 */
export interface TwilioMessaging {
  /**
   * Send one SMS (`POST /2010-04-01/Accounts/{sid}/Messages.json`, To/From/Body). `to` and `from`
   * are E.164 numbers; `body` at most 1600 characters. Resolves once Twilio accepted the message
   * (queued), with its SID. Rejects with a TwilioRestError (VET_E_TWILIO_REST): `retryable` false
   * when Twilio refused it (4xx other than 429: bad number, opted out…) or the arguments are invalid.
   */
  sendSms(to: string, from: string, body: string, signal: AbortSignal): Promise<{ messageSid: string }>;
}
