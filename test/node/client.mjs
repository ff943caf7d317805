#!/usr/bin/env node
// A real MCP client (the TypeScript SDK's Client over StreamableHTTPClientTransport)
// for mcp-relay's tests. It runs one or more scenarios against one MCP endpoint and
// prints ONE JSON line with what happened, then exits:
//   0  every scenario did what it should,
//   1  a scenario failed (the JSON says which and why),
//   2  bad usage,
//   3  the overall deadline passed.
//
// Usage:
//   node client.mjs [options] <scenario>...
//
// Scenarios (run in order on one connection; every run starts with initialize):
//   initialize                 connect only (session id, server info, capabilities)
//   tools-list                 list the tools
//   call <tool> <json-args>    call any tool, e.g. call echo '{"text":"hi"}'
//   progress                   call a progress tool with a progressToken and record
//                              the notifications and their order relative to the result
//   elicitation                call a tool that sends elicitation/create; answered with
//                              a canned form
//   sampling                   call a tool that sends sampling/createMessage; answered
//                              with a canned message
//   full                       initialize, tools-list, progress, elicitation, sampling
//   wait-file <path>           wait (within the deadline) until the file exists: the
//                              test changes the world meanwhile (kills a replica),
//                              and the same Client goes on with the next scenarios
//   touch-file <path>          create the file: tells the test the scenarios before it
//                              are done (pairs with wait-file)
//
// The progress/elicitation/sampling tool is chosen from tools/list:
//   mcp-relay legacy replica:  progress {steps,delay_ms} / ask / sample
//   server-everything:         trigger-long-running-operation {duration,steps} /
//                              trigger-elicitation-request / trigger-sampling-request
// or given with --progress-tool/--progress-args, --elicitation-tool/--elicitation-args,
// --sampling-tool/--sampling-args.
//
// Options (environment fallback in brackets):
//   --url URL                  MCP endpoint [MCP_URL]
//   --header 'Name: value'     extra request header, repeatable; also -H
//                              [MCP_HEADERS: JSON object]
//   --timeout-ms N             per-request timeout, default 15000 [MCP_TIMEOUT_MS]
//   --deadline-ms N            whole-run deadline, default 50000 [MCP_DEADLINE_MS]
//   --keep-session             do not DELETE the session at the end
//   --roots                    declare the roots capability and answer roots/list
//   --elicit-action A          accept (default) | decline | cancel
//   --elicit-answer TEXT       text put in every string field of the form, default
//                              "relay-elicit-answer"
//   --sample-answer TEXT       text of the canned sampling answer, default
//                              "relay-sample-answer"
//   --progress-steps N         steps for the auto-chosen progress tool, default 3
//   --progress-delay-ms N      delay per step for the auto-chosen tool, default 100
//
// Output (one line of JSON): ok, sessionId, protocolVersion, serverInfo,
// serverCapabilities, tools, steps[] (one per scenario: ok, tool, args, result,
// text, resultSeq, progress[], lateProgress[], progressBeforeResult,
// serverRequests[], answerSeen, error), serverRequests[], notifications[],
// errors[], asyncErrors[], http[] (every HTTP exchange: method, JSON-RPC
// method, status, content type, and the body of non-2xx answers), terminate.
// Every event carries seq, its place in the run's arrival order, and atMs.
// An error has kind:
//   http      a non-2xx answer: httpStatus, body, wwwAuthenticate, and code,
//             rpcMessage, data, id when the body is a JSON-RPC envelope
//   jsonrpc   a JSON-RPC error from the server: code, message, data
//   timeout   the SDK gave up waiting (--timeout-ms); the SDK reports it as
//             McpError -32001 "Request timed out", data {timeout}
//   other     anything else (connection refused, bad content type...)

import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport, StreamableHTTPError } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  McpError,
} from "@modelcontextprotocol/sdk/types.js";

const SCENARIOS = new Set(["initialize", "tools-list", "call", "progress", "elicitation", "sampling", "full", "wait-file", "touch-file"]);

// help prints the comment at the top of this file: the usage.
function help() {
  const lines = readFileSync(new URL(import.meta.url), "utf8").split("\n");
  const text = [];
  for (const line of lines.slice(1)) {
    if (!line.startsWith("//")) break;
    text.push(line.replace(/^\/\/ ?/, ""));
  }
  process.stdout.write(text.join("\n") + "\n");
  process.exit(0);
}

function usage(msg) {
  process.stdout.write(JSON.stringify({ ok: false, usageError: msg }) + "\n");
  process.exit(2);
}

function parseArgs(argv) {
  const o = {
    url: process.env.MCP_URL || "",
    headers: {},
    timeoutMs: Number(process.env.MCP_TIMEOUT_MS || 15000),
    deadlineMs: Number(process.env.MCP_DEADLINE_MS || 50000),
    keepSession: false,
    roots: false,
    elicitAction: "accept",
    elicitAnswer: "relay-elicit-answer",
    sampleAnswer: "relay-sample-answer",
    progressSteps: 3,
    progressDelayMs: 100,
    tools: {},
    scenarios: [],
  };
  if (process.env.MCP_HEADERS) {
    try {
      Object.assign(o.headers, JSON.parse(process.env.MCP_HEADERS));
    } catch (e) {
      usage(`MCP_HEADERS is not a JSON object: ${e.message}`);
    }
  }
  const need = (i, name) => {
    if (i >= argv.length) usage(`${name} needs a value`);
    return argv[i];
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    switch (a) {
      case "-h":
      case "--help": help(); break;
      case "--url": o.url = need(++i, a); break;
      case "-H":
      case "--header": {
        const h = need(++i, a);
        const at = h.indexOf(":");
        if (at <= 0) usage(`header must be 'Name: value', got ${JSON.stringify(h)}`);
        o.headers[h.slice(0, at).trim()] = h.slice(at + 1).trim();
        break;
      }
      case "--timeout-ms": o.timeoutMs = Number(need(++i, a)); break;
      case "--deadline-ms": o.deadlineMs = Number(need(++i, a)); break;
      case "--keep-session": o.keepSession = true; break;
      case "--roots": o.roots = true; break;
      case "--elicit-action": o.elicitAction = need(++i, a); break;
      case "--elicit-answer": o.elicitAnswer = need(++i, a); break;
      case "--sample-answer": o.sampleAnswer = need(++i, a); break;
      case "--progress-steps": o.progressSteps = Number(need(++i, a)); break;
      case "--progress-delay-ms": o.progressDelayMs = Number(need(++i, a)); break;
      case "--progress-tool": case "--elicitation-tool": case "--sampling-tool": {
        const kind = a.slice(2, a.indexOf("-tool"));
        (o.tools[kind] ??= {}).name = need(++i, a);
        break;
      }
      case "--progress-args": case "--elicitation-args": case "--sampling-args": {
        const kind = a.slice(2, a.indexOf("-args"));
        (o.tools[kind] ??= {}).args = parseJSONArg(need(++i, a), a);
        break;
      }
      default:
        if (a.startsWith("-")) usage(`unknown option ${a}`);
        if (!SCENARIOS.has(a)) usage(`unknown scenario ${a}`);
        if (a === "call") {
          const tool = need(++i, "call");
          const args = i + 1 < argv.length && !SCENARIOS.has(argv[i + 1]) ? parseJSONArg(argv[++i], "call args") : {};
          o.scenarios.push({ name: "call", tool, args });
        } else if (a === "wait-file" || a === "touch-file") {
          o.scenarios.push({ name: a, path: need(++i, a) });
        } else if (a === "full") {
          for (const s of ["tools-list", "progress", "elicitation", "sampling"]) o.scenarios.push({ name: s });
        } else if (a !== "initialize") {
          o.scenarios.push({ name: a });
        }
    }
  }
  if (!o.url) usage("no --url (or MCP_URL)");
  if (!["accept", "decline", "cancel"].includes(o.elicitAction)) usage(`bad --elicit-action ${o.elicitAction}`);
  return o;
}

function parseJSONArg(s, what) {
  try {
    return JSON.parse(s);
  } catch (e) {
    usage(`${what}: not JSON: ${e.message}`);
  }
}

const opts = parseArgs(process.argv.slice(2));
const started = Date.now();
const now = () => Date.now() - started;

// Everything observed, numbered in arrival order.
let seq = 0;
const out = {
  ok: false,
  url: opts.url,
  sessionId: null,
  protocolVersion: null,
  serverInfo: null,
  serverCapabilities: null,
  instructions: null,
  tools: null,
  steps: [],
  serverRequests: [],
  notifications: [],
  errors: [],
  asyncErrors: [],
  http: [],
  terminate: null,
  elapsedMs: 0,
};
let printed = false;
function finish(code) {
  if (printed) return;
  printed = true;
  out.elapsedMs = now();
  process.stdout.write(JSON.stringify(out) + "\n", () => process.exit(code));
}

const deadline = setTimeout(() => {
  out.errors.push({ scenario: "deadline", kind: "deadline", message: `run exceeded ${opts.deadlineMs} ms` });
  out.ok = false;
  finish(3);
}, opts.deadlineMs);
deadline.unref();

// fetch wrapper: records every HTTP exchange, and the body of error answers
// (the SDK only folds it into an error message).
const MAX_HTTP_LOG = 200;
let lastErrorResponse = null;
async function recordingFetch(url, init = {}) {
  const method = (init.method || "GET").toUpperCase();
  let rpc = null;
  if (typeof init.body === "string") {
    try {
      const m = JSON.parse(init.body);
      rpc = Array.isArray(m) ? "batch" : m.method ?? (m.id !== undefined ? "response" : null);
    } catch {
      rpc = "invalid";
    }
  }
  const entry = { seq: ++seq, atMs: now(), method, rpc, status: null };
  if (out.http.length < MAX_HTTP_LOG) out.http.push(entry);
  let res;
  try {
    res = await fetch(url, init);
  } catch (e) {
    entry.error = String(e?.cause?.code || e?.message || e);
    throw e;
  }
  entry.status = res.status;
  entry.contentType = res.headers.get("content-type");
  const sid = res.headers.get("mcp-session-id");
  if (sid) entry.sessionId = sid;
  if (!res.ok) {
    const www = res.headers.get("www-authenticate");
    if (www) entry.wwwAuthenticate = www;
    let text = null;
    try {
      text = await res.clone().text();
    } catch {
      /* body unreadable */
    }
    entry.body = parseMaybeJSON(text);
    lastErrorResponse = { method, rpc, status: res.status, wwwAuthenticate: www, body: entry.body };
  }
  return res;
}

function parseMaybeJSON(text) {
  if (text == null) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

// describeError turns whatever the SDK threw into {kind, httpStatus, code, message, data, body}.
function describeError(e) {
  const d = { kind: "other", message: String(e?.message ?? e) };
  if (e instanceof McpError) {
    // The SDK's own request timeout is an McpError too, with code -32001
    // (the code mcp-relay uses for auth): tell them apart.
    d.kind = e.code === -32001 && e.data && typeof e.data === "object" && "timeout" in e.data ? "timeout" : "jsonrpc";
    d.code = e.code;
    d.message = e.message.replace(/^MCP error -?\d+: /, "");
    if (e.data !== undefined) d.data = e.data;
  } else if (e instanceof StreamableHTTPError) {
    d.kind = "http";
    d.httpStatus = e.code;
    if (lastErrorResponse && lastErrorResponse.status === e.code) {
      d.body = lastErrorResponse.body;
      if (lastErrorResponse.wwwAuthenticate) d.wwwAuthenticate = lastErrorResponse.wwwAuthenticate;
      const env = d.body && typeof d.body === "object" ? d.body : null;
      if (env && env.jsonrpc === "2.0" && env.error) {
        d.code = env.error.code;
        d.rpcMessage = env.error.message;
        if (env.error.data !== undefined) d.data = env.error.data;
        d.id = env.id === undefined ? "<absent>" : env.id;
      }
    }
  } else if (e?.name === "UnauthorizedError") {
    d.kind = "unauthorized";
  }
  return d;
}

function resultText(result) {
  return (result?.content ?? [])
    .filter((c) => c.type === "text")
    .map((c) => c.text)
    .join("\n");
}

// Canned elicitation answer: fill the form from its schema.
function cannedForm(schema) {
  const content = {};
  for (const [key, prop] of Object.entries(schema?.properties ?? {})) {
    if (prop.default !== undefined) {
      content[key] = prop.default;
      continue;
    }
    switch (prop.type) {
      case "string":
        if (Array.isArray(prop.enum) && prop.enum.length) content[key] = prop.enum[0];
        else if (Array.isArray(prop.oneOf) && prop.oneOf.length) content[key] = prop.oneOf[0].const;
        else if (prop.format === "email") content[key] = "relay@example.com";
        else if (prop.format === "uri") content[key] = "https://example.com/relay";
        else if (prop.format === "date") content[key] = "2000-01-01";
        else if (prop.format === "date-time") content[key] = "2000-01-01T00:00:00Z";
        else content[key] = opts.elicitAnswer;
        break;
      case "boolean":
        content[key] = true;
        break;
      case "integer":
      case "number":
        content[key] = prop.minimum ?? 1;
        break;
      case "array": {
        const items = prop.items ?? {};
        const first = items.enum?.[0] ?? items.anyOf?.[0]?.const ?? items.oneOf?.[0]?.const;
        if (first !== undefined) content[key] = [first];
        break;
      }
    }
  }
  return content;
}

const capabilities = { elicitation: { form: {} }, sampling: {} };
if (opts.roots) capabilities.roots = { listChanged: false };
const client = new Client({ name: "mcp-relay-node-client", version: "1.0.0" }, { capabilities });

client.setRequestHandler(ElicitRequestSchema, async (req) => {
  const rec = { seq: ++seq, atMs: now(), method: req.method, message: req.params?.message };
  out.serverRequests.push(rec);
  if (opts.elicitAction !== "accept") return { action: opts.elicitAction };
  const content = cannedForm(req.params?.requestedSchema);
  rec.answered = content;
  return { action: "accept", content };
});
client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
  out.serverRequests.push({ seq: ++seq, atMs: now(), method: req.method, messages: req.params?.messages?.length ?? 0 });
  return {
    role: "assistant",
    content: { type: "text", text: opts.sampleAnswer },
    model: "relay-canned-model",
    stopReason: "endTurn",
  };
});
if (opts.roots) {
  client.setRequestHandler(ListRootsRequestSchema, async (req) => {
    out.serverRequests.push({ seq: ++seq, atMs: now(), method: req.method });
    return { roots: [{ uri: "file:///tmp/mcp-relay", name: "relay" }] };
  });
}
client.fallbackNotificationHandler = async (n) => {
  out.notifications.push({ seq: ++seq, atMs: now(), method: n.method, params: n.params });
};

// Progress notifications that arrive after their call's result are not given
// to onprogress: the SDK reports them through onerror. Keep them apart.
const lateProgress = [];
client.onerror = (e) => {
  const msg = String(e?.message ?? e);
  const m = msg.match(/^Received a progress notification for an unknown token: (.*)$/s);
  if (m) {
    const n = parseMaybeJSON(m[1]);
    lateProgress.push({ seq: ++seq, atMs: now(), params: n?.params ?? n });
    return;
  }
  if (out.asyncErrors.length < 50) out.asyncErrors.push({ seq: ++seq, atMs: now(), ...describeError(e) });
};

const transport = new StreamableHTTPClientTransport(new URL(opts.url), {
  requestInit: { headers: opts.headers },
  fetch: recordingFetch,
  reconnectionOptions: { initialReconnectionDelay: 200, maxReconnectionDelay: 1000, reconnectionDelayGrowFactor: 1.5, maxRetries: 2 },
});

const reqOpts = () => ({ timeout: opts.timeoutMs });

function pickTool(kind, candidates) {
  const given = opts.tools[kind];
  if (given?.name) return { name: given.name, args: given.args ?? {} };
  const names = new Set((out.tools ?? []).map((t) => t.name));
  for (const c of candidates) {
    if (names.has(c.name)) return { name: c.name, args: given?.args ?? c.args };
  }
  return null;
}

async function callTool(step, name, args, extra = {}) {
  step.tool = name;
  step.args = args;
  const t0 = now();
  let result;
  try {
    result = await client.callTool({ name, arguments: args }, undefined, { ...reqOpts(), ...extra });
  } catch (e) {
    step.durationMs = now() - t0; // how long the user waited for the error
    throw e;
  }
  step.resultSeq = ++seq;
  step.resultAtMs = now();
  step.durationMs = step.resultAtMs - t0;
  step.result = result;
  step.text = resultText(result);
  step.isError = result?.isError === true;
  return result;
}

async function listTools() {
  const r = await client.listTools(undefined, reqOpts());
  out.tools = r.tools.map((t) => ({ name: t.name }));
  return r;
}

const runners = {
  async "wait-file"(step, sc) {
    step.path = sc.path;
    while (!existsSync(sc.path)) await new Promise((r) => setTimeout(r, 50));
    step.ok = true;
  },
  async "touch-file"(step, sc) {
    step.path = sc.path;
    writeFileSync(sc.path, "");
    step.ok = true;
  },
  async "tools-list"(step) {
    await listTools();
    step.tools = out.tools.map((t) => t.name);
    step.ok = step.tools.length > 0;
  },
  async call(step, sc) {
    await callTool(step, sc.tool, sc.args);
    step.ok = !step.isError;
  },
  async progress(step) {
    if (!out.tools) await listTools();
    const tool = pickTool("progress", [
      { name: "progress", args: { steps: opts.progressSteps, delay_ms: opts.progressDelayMs } },
      { name: "trigger-long-running-operation", args: { duration: (opts.progressDelayMs * opts.progressSteps) / 1000, steps: opts.progressSteps } },
    ]);
    if (!tool) throw new Error("no progress tool on this server");
    step.progress = [];
    const before = lateProgress.length;
    await callTool(step, tool.name, tool.args, {
      onprogress: (p) => step.progress.push({ seq: ++seq, atMs: now(), ...p }),
    });
    // Give stragglers (sent on another stream) a moment to show up.
    await new Promise((r) => setTimeout(r, 100));
    step.lateProgress = lateProgress.slice(before);
    step.progressBeforeResult = step.progress.length > 0 && step.lateProgress.length === 0 && step.progress.every((p) => p.seq < step.resultSeq);
    step.ok = !step.isError && step.progress.length + step.lateProgress.length > 0;
  },
  async elicitation(step) {
    if (!out.tools) await listTools();
    const tool = pickTool("elicitation", [
      { name: "ask", args: { message: "mcp-relay elicitation check" } },
      { name: "trigger-elicitation-request", args: {} },
    ]);
    if (!tool) throw new Error("no elicitation tool on this server (did the server see the elicitation capability?)");
    const before = out.serverRequests.length;
    await callTool(step, tool.name, tool.args);
    step.serverRequests = out.serverRequests.slice(before).filter((r) => r.method === "elicitation/create");
    const expect = opts.elicitAction === "accept" ? opts.elicitAnswer : opts.elicitAction === "decline" ? "decline" : "cancel";
    step.answerSeen = step.text.includes(expect);
    step.ok = !step.isError && step.serverRequests.length > 0 && step.answerSeen;
  },
  async sampling(step) {
    if (!out.tools) await listTools();
    const tool = pickTool("sampling", [
      { name: "sample", args: { prompt: "mcp-relay sampling check" } },
      { name: "trigger-sampling-request", args: { prompt: "mcp-relay sampling check", maxTokens: 16 } },
    ]);
    if (!tool) throw new Error("no sampling tool on this server (did the server see the sampling capability?)");
    const before = out.serverRequests.length;
    await callTool(step, tool.name, tool.args);
    step.serverRequests = out.serverRequests.slice(before).filter((r) => r.method === "sampling/createMessage");
    step.answerSeen = step.text.includes(opts.sampleAnswer);
    step.ok = !step.isError && step.serverRequests.length > 0 && step.answerSeen;
  },
};

async function main() {
  let failed = false;
  const init = { scenario: "initialize", ok: false };
  out.steps.push(init);
  try {
    await client.connect(transport, reqOpts());
    init.ok = true;
    out.sessionId = transport.sessionId ?? null;
    out.protocolVersion = transport.protocolVersion ?? null;
    out.serverInfo = client.getServerVersion() ?? null;
    out.serverCapabilities = client.getServerCapabilities() ?? null;
    out.instructions = client.getInstructions() ?? null;
  } catch (e) {
    const d = describeError(e);
    init.error = d;
    out.errors.push({ scenario: "initialize", ...d });
    failed = true;
  }
  if (!failed) {
    for (const sc of opts.scenarios) {
      const step = { scenario: sc.name, ok: false };
      out.steps.push(step);
      try {
        await runners[sc.name](step, sc);
      } catch (e) {
        const d = describeError(e);
        step.error = d;
        out.errors.push({ scenario: sc.name, ...d });
      }
      if (!step.ok) failed = true;
    }
  }
  out.sessionId = transport.sessionId ?? out.sessionId;
  if (!opts.keepSession && transport.sessionId) {
    try {
      await transport.terminateSession();
      out.terminate = { ok: true };
    } catch (e) {
      out.terminate = { ok: false, ...describeError(e) };
    }
  }
  try {
    await client.close();
  } catch {
    /* closing is best effort */
  }
  out.lateProgress = lateProgress;
  out.ok = !failed;
  finish(failed ? 1 : 0);
}

main().catch((e) => {
  out.errors.push({ scenario: "internal", ...describeError(e), stack: String(e?.stack ?? "") });
  finish(1);
});
