// The official `ollama` npm client (ollama-js, a devDependency in frontend/package.json) against
// a live server: every call of tests/inference/test_ollama_js.py. It asserts what the client
// hands its caller, exits 1 on the first failure, and prints one JSON summary on stdout.
//
//   QIG_OLLAMA_HOST=http://127.0.0.1:9200 node tests/clients/ollama_js.mjs
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'

// The package lives in frontend/node_modules, installed by `make install` (npm ci).
const require = createRequire(new URL('../../frontend/package.json', import.meta.url))
const { Ollama } = require('ollama')

const host = process.env.QIG_OLLAMA_HOST
assert.ok(host, 'QIG_OLLAMA_HOST: the live server, e.g. http://127.0.0.1:9200')
const MODEL = process.env.QIG_MODEL ?? 'qig-constellation:latest'
const SHORT = { num_predict: 12, seed: 3 }
const client = new Ollama({ host })
const out = {}

const isDate = (value, what) =>
  assert.ok(typeof value === 'string' && !Number.isNaN(Date.parse(value)), `${what}: ${value}`)
const ended = (reply, what) =>
  assert.ok(['stop', 'length'].includes(reply.done_reason), `${what}: ${reply.done_reason}`)

// list
const listed = await client.list()
assert.ok(Array.isArray(listed.models), 'list: models')
const latest = listed.models.find((m) => m.model === MODEL)
assert.ok(latest, `list: ${MODEL} in ${listed.models.map((m) => m.model)}`)
assert.equal(latest.name, MODEL)
assert.ok(latest.size > 0 && /^[0-9a-f]{64}$/.test(latest.digest), 'list: size and digest')
assert.equal(latest.details.family, 'qig')
isDate(latest.modified_at, 'list: modified_at')
out.list = { models: listed.models.map((m) => m.model) }

// chat, whole and streamed: the same seed gives the same text
const messages = [{ role: 'user', content: 'How do I open a file?' }]
const whole = await client.chat({ model: MODEL, messages, options: SHORT })
assert.equal(whole.done, true)
assert.equal(whole.message.role, 'assistant')
assert.equal(typeof whole.message.content, 'string')
ended(whole, 'chat')
assert.ok(whole.eval_count > 0 && whole.eval_count <= 12, `chat: eval_count ${whole.eval_count}`)
isDate(whole.created_at, 'chat: created_at')
const parts = []
for await (const part of await client.chat({ model: MODEL, messages, options: SHORT, stream: true })) {
  parts.push(part)
}
assert.ok(parts.length > 1, `chat stream: ${parts.length} parts`)
assert.ok(parts.slice(0, -1).every((p) => p.done === false), 'chat stream: done only at the end')
assert.equal(parts.at(-1).done, true)
assert.ok(parts.every((p) => p.message.role === 'assistant'), 'chat stream: roles')
const streamed = parts.map((p) => p.message.content).join('')
assert.equal(streamed, whole.message.content)
out.chat = { content: whole.message.content, streamed, parts: parts.length }

// generate, whole and streamed
const generated = await client.generate({ model: MODEL, prompt: 'The socket module', options: SHORT })
assert.equal(generated.done, true)
assert.equal(typeof generated.response, 'string')
ended(generated, 'generate')
assert.ok(Array.isArray(generated.context) && generated.context.length > 0, 'generate: context')
let pieces = ''
let last
for await (const part of await client.generate({
  model: MODEL,
  prompt: 'The socket module',
  options: SHORT,
  stream: true,
})) {
  pieces += part.response
  last = part
}
assert.equal(last.done, true)
assert.equal(pieces, generated.response)
out.generate = { response: generated.response, eval_count: generated.eval_count }

// chat with format 'json': the reply parses
const json = await client.chat({
  model: MODEL,
  messages: [{ role: 'user', content: 'Describe a file as JSON.' }],
  format: 'json',
  options: { num_predict: 256, seed: 3 },
})
assert.equal(json.done_reason, 'stop', 'format json: the grammar ends the value')
const parsed = JSON.parse(json.message.content)
out.json = { content: json.message.content, type: Array.isArray(parsed) ? 'array' : typeof parsed }

// embed
const embedded = await client.embed({ model: MODEL, input: ['sockets and files', 'poetry'] })
assert.equal(embedded.model, MODEL)
assert.equal(embedded.embeddings.length, 2)
assert.ok(embedded.embeddings.every((e) => e.length > 0 && e.every(Number.isFinite)), 'embed: vectors')
out.embed = { count: embedded.embeddings.length, dimensions: embedded.embeddings[0].length }

// show
const shown = await client.show({ model: MODEL })
assert.equal(shown.model_info['general.architecture'], 'qig')
assert.ok(shown.capabilities.includes('completion'), `show: ${shown.capabilities}`)
assert.equal(shown.details.family, 'qig')
assert.equal(typeof shown.template, 'string')
isDate(shown.modified_at, 'show: modified_at')
const contextKey = Object.keys(shown.model_info).find((k) => k.endsWith('.context_length'))
assert.ok(contextKey, 'show: <arch>.context_length in model_info')
out.show = { context_length: shown.model_info[contextKey], capabilities: shown.capabilities }

// ps: the model the calls above loaded
const running = await client.ps()
const loaded = running.models.find((m) => m.model === MODEL)
assert.ok(loaded, `ps: ${MODEL} in ${running.models.map((m) => m.model)}`)
isDate(loaded.expires_at, 'ps: expires_at')
assert.ok(loaded.size > 0 && Number.isInteger(loaded.size_vram), 'ps: size and size_vram')
out.ps = { models: running.models.map((m) => m.model), expires_at: loaded.expires_at }

// an unknown model: the client's ResponseError (not exported: known by its name), with the status
try {
  await client.chat({ model: 'no-such-model', messages })
  assert.fail('chat with an unknown model did not throw')
} catch (error) {
  assert.equal(error.name, 'ResponseError', `unknown model: ${error}`)
  assert.equal(error.status_code, 404)
  out.error = { status_code: error.status_code, message: error.error }
}

console.log(JSON.stringify(out))
