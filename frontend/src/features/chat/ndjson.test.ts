import { describe, expect, it } from 'vitest';
import { NdjsonError, readNdjson } from './ndjson';

function streamOf(chunks: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks)
        controller.enqueue(typeof chunk === 'string' ? encoder.encode(chunk) : chunk);
      controller.close();
    },
  });
}

async function all<T>(iterator: AsyncGenerator<T>): Promise<T[]> {
  const values: T[] = [];
  for await (const value of iterator) values.push(value);
  return values;
}

describe('readNdjson', () => {
  it('yields each line, whether chunks hold several lines or end mid-line', async () => {
    const stream = streamOf(['{"a":1}\n{"b"', ':2}\n\n{"c":', '3}\n{"d":4}']);
    expect(await all(readNdjson(stream))).toEqual([{ a: 1 }, { b: 2 }, { c: 3 }, { d: 4 }]);
  });

  it('joins a UTF-8 character split across chunks', async () => {
    const bytes = new TextEncoder().encode('{"content":"Φ κ"}\n');
    const cut = bytes.indexOf(0xa6); // the second byte of Φ (CE A6)
    const stream = streamOf([bytes.slice(0, cut), bytes.slice(cut)]);
    expect(await all(readNdjson(stream))).toEqual([{ content: 'Φ κ' }]);
  });

  it('yields a line as soon as it is complete, before the stream ends', async () => {
    const encoder = new TextEncoder();
    let push!: (text: string) => void;
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        push = (text) => controller.enqueue(encoder.encode(text));
      },
    });
    const lines = readNdjson<{ n: number }>(stream);
    push('{"n":1}\n');
    expect((await lines.next()).value).toEqual({ n: 1 });
    push('{"n":2}\n');
    expect((await lines.next()).value).toEqual({ n: 2 });
  });

  it('says which line is not JSON', async () => {
    await expect(all(readNdjson(streamOf(['{"ok":1}\n<html>oops</html>\n'])))).rejects.toThrow(NdjsonError);
    await expect(all(readNdjson(streamOf(['<html>oops</html>\n'])))).rejects.toThrow(/<html>oops/);
  });

  it('ends with an AbortError when its signal is aborted mid-stream', async () => {
    const controller = new AbortController();
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode('{"n":1}\n'));
      },
    });
    const lines = readNdjson(stream, controller.signal);
    expect((await lines.next()).value).toEqual({ n: 1 });
    const pending = lines.next();
    controller.abort();
    await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
  });
});
