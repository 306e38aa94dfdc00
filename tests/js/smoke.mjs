// Smoke test of outcrop with the AWS SDK for JavaScript v3 (@aws-sdk/client-bedrock and
// @aws-sdk/client-bedrock-runtime, pinned in package.json for node 20).
//
// Environment:
//   AWS_ENDPOINT_URL or OUTCROP_ENDPOINT   the server (OUTCROP_ENDPOINT is passed as `endpoint`;
//                                          AWS_ENDPOINT_URL alone is picked up by the SDK itself)
//   AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION   static credentials (never IMDS)
//   SMOKE_PREFIX                           name prefix of the profiles created (default "js-smoke")
//
// Prints one JSON document on stdout: one entry per step, each either {ok: true, ...} or
// {ok: false, error: {...}}. A step that fails does not stop the later ones; the caller asserts.
// The runtime client keeps its default request handler (NodeHttp2Handler: h2c prior knowledge
// against an http:// endpoint). Both clients are destroyed at the end, and node must then exit by
// itself: a guard timer exits with status 3 if something still holds the event loop.

import {
  BedrockClient,
  CreateInferenceProfileCommand,
  DeleteInferenceProfileCommand,
  GetInferenceProfileCommand,
  ListTagsForResourceCommand,
  TagResourceCommand,
  paginateListInferenceProfiles,
} from "@aws-sdk/client-bedrock";
import { BedrockRuntimeClient, ConverseCommand } from "@aws-sdk/client-bedrock-runtime";

const SOURCE = "arn:aws:bedrock:us-east-1::inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0";
const PREFIX = process.env.SMOKE_PREFIX || "js-smoke";
const STEP_TIMEOUT_MS = 15000;

const config = { region: process.env.AWS_REGION || "us-east-1", maxAttempts: 1 };
if (process.env.OUTCROP_ENDPOINT) config.endpoint = process.env.OUTCROP_ENDPOINT;

const bedrock = new BedrockClient(config);
const runtime = new BedrockRuntimeClient(config); // default handler on purpose: HTTP/2

function describeError(e) {
  return {
    name: e?.name,
    constructor: e?.constructor?.name,
    code: e?.code,
    message: String(e?.message ?? e),
    fault: e?.$fault,
    httpStatusCode: e?.$metadata?.httpStatusCode,
    requestId: e?.$metadata?.requestId,
    // An error the SDK deserialized from an AWS error response (modelled or not), as opposed to a
    // transport or client-side failure such as ERR_HTTP2_ERROR or a TypeError.
    awsShaped: typeof e?.$fault === "string" && typeof e?.$metadata?.httpStatusCode === "number",
  };
}

async function step(name, fn) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`${name} timed out`), { name: "SmokeTimeout" })),
      STEP_TIMEOUT_MS);
  });
  try {
    const value = await Promise.race([fn(), timeout]);
    results[name] = { ok: true, ...value };
  } catch (e) {
    results[name] = { ok: false, error: describeError(e) };
  } finally {
    clearTimeout(timer);
  }
  return results[name];
}

const results = {
  endpointFrom: config.endpoint ? "option" : "AWS_ENDPOINT_URL",
  handlers: {
    bedrock: bedrock.config.requestHandler?.constructor?.name,
    runtime: runtime.config.requestHandler?.constructor?.name,
  },
};
const created = [];

await step("create", async () => {
  for (let i = 0; i < 3; i++) {
    const out = await bedrock.send(new CreateInferenceProfileCommand({
      inferenceProfileName: `${PREFIX}-${i}`,
      description: "created by the JS smoke test",
      modelSource: { copyFrom: SOURCE },
      tags: [{ key: "team", value: "js" }],
    }));
    created.push(out.inferenceProfileArn);
  }
  return { arns: created, httpStatusCode: 201 };
});

const arn = created[0];

await step("paginate", async () => {
  const pages = [];
  for await (const page of paginateListInferenceProfiles(
    { client: bedrock, pageSize: 2 },
    { typeEquals: "APPLICATION" },
  )) {
    pages.push((page.inferenceProfileSummaries ?? []).map((p) => ({
      arn: p.inferenceProfileArn, name: p.inferenceProfileName, type: p.type, status: p.status,
    })));
  }
  return { pageSizes: pages.map((p) => p.length), profiles: pages.flat() };
});

await step("get", async () => {
  const out = await bedrock.send(new GetInferenceProfileCommand({ inferenceProfileIdentifier: arn }));
  return {
    inferenceProfileArn: out.inferenceProfileArn,
    inferenceProfileId: out.inferenceProfileId,
    inferenceProfileName: out.inferenceProfileName,
    description: out.description,
    type: out.type,
    status: out.status,
    models: (out.models ?? []).map((m) => m.modelArn),
    createdAtIsDate: out.createdAt instanceof Date && !Number.isNaN(out.createdAt.getTime()),
    createdAt: out.createdAt instanceof Date ? out.createdAt.toISOString() : String(out.createdAt),
  };
});

await step("tag", async () => {
  await bedrock.send(new TagResourceCommand({ resourceARN: arn, tags: [{ key: "env", value: "smoke" }] }));
  const out = await bedrock.send(new ListTagsForResourceCommand({ resourceARN: arn }));
  return { tags: Object.fromEntries((out.tags ?? []).map((t) => [t.key, t.value])) };
});

await step("converse", async () => {
  const out = await runtime.send(new ConverseCommand({
    modelId: arn ?? SOURCE, // the system-defined profile if create failed: the transport is still tested
    messages: [{ role: "user", content: [{ text: "Say hello." }] }],
    inferenceConfig: { maxTokens: 16, temperature: 0 },
  }));
  return {
    httpStatusCode: out.$metadata?.httpStatusCode,
    role: out.output?.message?.role,
    text: (out.output?.message?.content ?? []).map((c) => c.text ?? "").join(""),
    stopReason: out.stopReason,
    usage: out.usage,
  };
});

await step("delete", async () => {
  for (const a of created) {
    await bedrock.send(new DeleteInferenceProfileCommand({ inferenceProfileIdentifier: a }));
  }
  return { deleted: created.length };
});

// A modelled error from the control plane: the deleted profile is gone.
await step("getDeleted", async () => {
  const out = await bedrock.send(new GetInferenceProfileCommand({ inferenceProfileIdentifier: arn }));
  return { unexpected: out.inferenceProfileArn };
});

bedrock.destroy();
runtime.destroy();

process.stdout.write(JSON.stringify(results) + "\n");
setTimeout(() => {
  process.stderr.write("smoke.mjs: node did not exit after client.destroy()\n");
  process.exit(3);
}, 5000).unref();
