// The streaming operations with the AWS SDK for JavaScript v3 runtime client on its default handler
// (NodeHttp2Handler: h2c prior knowledge against an http:// endpoint): ConverseStream and
// InvokeModelWithResponseStream, then ConverseStream refused by a chaos rule (a ThrottlingException).
//
// Environment: OUTCROP_ENDPOINT (the server), AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION.
// Prints one JSON document on stdout, one entry per step ({ok: true, ...} or {ok: false, error}).
// The client is destroyed at the end, and node must then exit by itself (else status 3).

import {
  BedrockRuntimeClient,
  ConverseStreamCommand,
  InvokeModelWithResponseStreamCommand,
} from "@aws-sdk/client-bedrock-runtime";

const MODEL = "us.anthropic.claude-3-haiku-20240307-v1:0";
const STEP_TIMEOUT_MS = 15000;
const endpoint = process.env.OUTCROP_ENDPOINT;
const runtime = new BedrockRuntimeClient({ region: process.env.AWS_REGION || "us-east-1", endpoint, maxAttempts: 1 });
const results = { handler: runtime.config.requestHandler?.constructor?.name };
const messages = [{ role: "user", content: [{ text: "Hello there" }] }];

async function step(name, fn) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`${name} timed out`), { name: "StepTimeout" })),
      STEP_TIMEOUT_MS);
  });
  try {
    results[name] = { ok: true, ...(await Promise.race([fn(), timeout])) };
  } catch (e) {
    results[name] = { ok: false, error: { name: e?.name, message: String(e?.message ?? e),
                                          httpStatusCode: e?.$metadata?.httpStatusCode } };
  } finally {
    clearTimeout(timer);
  }
}

await step("converseStream", async () => {
  const out = await runtime.send(new ConverseStreamCommand({ modelId: MODEL, messages }));
  const events = [];
  let text = "";
  for await (const event of out.stream) {
    const name = Object.keys(event).find((k) => event[k] !== undefined);
    events.push(name);
    if (name === "contentBlockDelta") text += event.contentBlockDelta.delta.text ?? "";
    if (name === "metadata") results.usage = event.metadata.usage;
  }
  return { httpStatusCode: out.$metadata.httpStatusCode, events, text };
});

await step("invokeStream", async () => {
  const body = JSON.stringify({ anthropic_version: "bedrock-2023-05-31", max_tokens: 64, messages: [
    { role: "user", content: "Hello there" }] });
  const out = await runtime.send(new InvokeModelWithResponseStreamCommand({ modelId: MODEL, body }));
  let text = "";
  let chunks = 0;
  for await (const event of out.body) {
    const chunk = JSON.parse(new TextDecoder().decode(event.chunk.bytes));
    chunks += 1;
    if (chunk.type === "content_block_delta") text += chunk.delta.text;
  }
  return { chunks, text };
});

await fetch(`${endpoint}/_outcrop/chaos`, { method: "POST", body: JSON.stringify({ region: "*", fault: "throttle" }) });
await step("throttled", async () => {
  const out = await runtime.send(new ConverseStreamCommand({ modelId: MODEL, messages }));
  for await (const _ of out.stream) { /* drain */ }
  return { unexpected: true };
});
await fetch(`${endpoint}/_outcrop/chaos`, { method: "DELETE" });

runtime.destroy();
process.stdout.write(JSON.stringify(results) + "\n");
setTimeout(() => {
  process.stderr.write("stream.mjs: node did not exit after client.destroy()\n");
  process.exit(3);
}, 5000).unref();
