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
